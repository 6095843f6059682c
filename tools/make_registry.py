"""Regenerate ``lib/labscale/data/registry.json`` from a folder of release files laid out ``<dataset>/<path>``.

    python tools/make_registry.py /path/to/data [--check]

The provenance of each dataset (source repository, commit, original paths, licence, citation) is written down once,
below, from the dataset's ``SOURCE.md``; sha256 and sizes are computed from the folder
(:func:`labscale.data.registry.describe_folder`). Every file of a dataset folder is described except its
``SOURCE.md`` (written for the copy; no source repository holds it). ``--check`` compares instead of writing and
exits 1 when the registry is out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from labscale.data import registry  # noqa: E402

RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"

# dataset -> provenance. "rules": (local prefix, repository, commit, remote prefix), first match wins; "renamed":
# local path -> original path, for files whose name was changed when copied.
SOURCES: dict[str, dict] = {
    "bbq": {
        "title": "BBQ: Bias Benchmark for QA (6 of the 11 category files)",
        "source": "nyu-mll/BBQ @ bea11bd97d79217245b5871acd247b9d6eb24598",
        "licence": "CC BY 4.0",
        "citation": (
            "Parrish, A., Chen, A., Nangia, N., Padmakumar, V., Phang, J., Thompson, J., Htut, P. M., & Bowman, S. R. "
            "(2022). BBQ: A Hand-Built Bias Benchmark for Question Answering. Findings of ACL 2022."
        ),
        "note": "Gender_identity, Race_ethnicity, Race_x_SES, Race_x_gender, SES and supplemental/ are not registered.",
        "rules": [("", "nyu-mll/BBQ", "bea11bd97d79217245b5871acd247b9d6eb24598", "")],
    },
    "climate-fever": {
        "title": "CLIMATE-FEVER",
        "source": "tdiggelm/climate-fever-dataset @ 03de61617b10a5c1935f8e08bb0e8ac1ee775356",
        "licence": "none stated in the repository (cite the paper; check before redistributing)",
        "citation": (
            "Diggelmann, T., Boyd-Graber, J., Bulian, J., Ciaramita, M., & Leippold, M. (2020). CLIMATE-FEVER: "
            "A Dataset for Verification of Real-World Climate Claims. arXiv:2012.00614."
        ),
        "rules": [("", "tdiggelm/climate-fever-dataset", "03de61617b10a5c1935f8e08bb0e8ac1ee775356", "dataset/")],
    },
    "fmti": {
        "title": "Foundation Model Transparency Index (v1.0 Oct 2023, v1.1 May 2024, Dec 2025)",
        "source": "stanford-crfm/fmti @ f4500c5f4763966fddf71c468a148533a1236290",
        "licence": "CC-BY (the repository's README: data and visuals may be re-used for any purpose with attribution)",
        "citation": (
            "Bommasani, R., Klyman, K., Longpre, S., Kapoor, S., Maslej, N., Xiong, B., Zhang, D., & Liang, P. "
            "(2023). The Foundation Model Transparency Index. arXiv:2310.12941. Bommasani, R., Klyman, K., "
            "Kapoor, S., Longpre, S., Xiong, B., Maslej, N., & Liang, P. (2024). The Foundation Model Transparency "
            "Index v1.1: May 2024. arXiv:2407.12929."
        ),
        "note": "PDFs and images are not registered; four May2024 report files are stored under names without "
        "spaces and colons (each file's note gives the original name).",
        "rules": [("", "stanford-crfm/fmti", "f4500c5f4763966fddf71c468a148533a1236290", "")],
        "renamed": {
            "May2024/reports/AI21_Labs_fmtransparencyreport_May2024.csv": (
                "May2024/reports/AI21 Labs_fmtransparencyreport_May2024.csv"
            ),
            "May2024/reports/Aleph_Alpha_fmtransparencyreport_May2024.csv": (
                "May2024/reports/Aleph Alpha_fmtransparencyreport_May2024.csv"
            ),
            "May2024/reports/BigCode_Hugging_Face_ServiceNow_fmtransparencyreport_May2024.csv": (
                "May2024/reports/BigCode:Hugging Face:ServiceNow_fmtransparencyreport_May2024.csv"
            ),
            "May2024/reports/Stability_AI_fmtransparencyreport_May2024.csv": (
                "May2024/reports/Stability AI_fmtransparencyreport_May2024.csv"
            ),
        },
    },
    "magellan-er": {
        "title": "ER-Magellan / DeepMatcher entity-matching benchmarks (Ditto serialisation)",
        "source": "megagonlabs/ditto @ 52985564a93fb11308439516d3e17a033d43ec8f",
        "licence": "Apache-2.0 (the repository's LICENSE; no separate data licence stated)",
        "citation": (
            "Li, Y., Li, J., Suhara, Y., Doan, A., & Tan, W.-C. (2020). Deep Entity Matching with Pre-Trained "
            "Language Models. PVLDB 14(1). Data: Mudgal, S., Li, H., Rekatsinas, T., Doan, A., Park, Y., "
            "Krishnan, G., Deep, R., Arcaute, E., & Raghavendra, V. (2018). Deep Learning for Entity Matching: "
            "A Design Space Exploration. SIGMOD 2018."
        ),
        "rules": [("", "megagonlabs/ditto", "52985564a93fb11308439516d3e17a033d43ec8f", "")],
    },
    "medqa": {
        "title": "MedQA (USMLE, US English, 4 options): test split",
        "source": "Taewhoo/BioRAG @ fdb2e334aa08ad6fc3e3fefd91e409961ebf3e0b (data); "
        "jind11/MedQA @ 27b02f66aac217933c9648a06f82e9f720377925 (LICENSE)",
        "licence": "MIT (jind11/MedQA LICENSE; the Taewhoo/BioRAG copy states none)",
        "citation": (
            "Jin, D., Pan, E., Oufattole, N., Weng, W.-H., Fang, H., & Szolovits, P. (2021). What Disease Does This "
            "Patient Have? A Large-Scale Open Domain Question Answering Dataset from Medical Exams. Applied "
            "Sciences 11(14), 6421."
        ),
        "note": "The official release is on Google Drive; the test file comes from a third-party repository, stored "
        "under its release path data_clean/questions/US/4_options/.",
        "rules": [
            ("LICENSE", "jind11/MedQA", "27b02f66aac217933c9648a06f82e9f720377925", "LICENSE"),
            ("US/4_options/", "Taewhoo/BioRAG", "fdb2e334aa08ad6fc3e3fefd91e409961ebf3e0b", ""),
        ],
    },
    "mts-dialog": {
        "title": "MTS-Dialog",
        "source": "abachaa/MTS-Dialog @ 3ff0801933608d6f570468c13125125fb5cabdea",
        "licence": "CC BY 4.0",
        "citation": (
            "Ben Abacha, A., Yim, W., Fan, Y., & Lin, T. (2023). An Empirical Study of Clinical Note Generation "
            "from Doctor-Patient Encounters. EACL 2023."
        ),
        "rules": [
            ("LICENSE.txt", "abachaa/MTS-Dialog", "3ff0801933608d6f570468c13125125fb5cabdea", "LICENSE.txt"),
            ("", "abachaa/MTS-Dialog", "3ff0801933608d6f570468c13125125fb5cabdea", "Main-Dataset/"),
        ],
    },
    "qasper": {
        "title": "QASPER: the official baseline's 1-paper test fixture (not the release)",
        "source": "allenai/qasper-led-baseline @ afd0fb96bf78ce8cd8157639c6f6a6995e4f9089",
        "licence": "Apache-2.0 (the repository's LICENSE; the full dataset is CC BY 4.0)",
        "citation": (
            "Dasigi, P., Lo, K., Beltagy, I., Cohan, A., Smith, N. A., & Gardner, M. (2021). A Dataset of "
            "Information-Seeking Questions and Answers Anchored in Research Papers. NAACL 2021."
        ),
        "note": "The qasper-{train,dev,test}-v0.3.json release files are not registered (AllenAI S3 / Hugging Face).",
        "rules": [("", "allenai/qasper-led-baseline", "afd0fb96bf78ce8cd8157639c6f6a6995e4f9089", "")],
    },
    "spider": {
        "title": "Spider 1.0 dev set (no databases)",
        "source": "taoyds/spider @ b7b5b8c890cd30e35427348bb9eb8c6d1350ca7c",
        "licence": "Apache-2.0 (the repository's LICENSE; no separate data licence stated)",
        "citation": (
            "Yu, T., Zhang, R., Yang, K., Yasunaga, M., Wang, D., Li, Z., Ma, J., Li, I., Yao, Q., Roman, S., "
            "Zhang, Z., & Radev, D. (2018). Spider: A Large-Scale Human-Labeled Dataset for Complex and "
            "Cross-Domain Semantic Parsing and Text-to-SQL Task. EMNLP 2018."
        ),
        "rules": [("", "taoyds/spider", "b7b5b8c890cd30e35427348bb9eb8c6d1350ca7c", "")],
    },
    "squad-v2.0": {
        "title": "SQuAD 2.0 dev, the CS224N half with answers (16 of 35 articles)",
        "source": "chrischute/squad @ 85623adeb9e6639f145081fea9cae2d8f3a26379",
        "licence": "not stated for the data (chrischute/squad and rajpurkar/SQuAD-explorer carry MIT for code)",
        "citation": (
            "Rajpurkar, P., Jia, R., & Liang, P. (2018). Know What You Don't Know: Unanswerable Questions for "
            "SQuAD. ACL 2018."
        ),
        "note": "Not the official dev-v2.0.json: scores are not comparable to published full-dev numbers.",
        "rules": [("cs224n-split/", "chrischute/squad", "85623adeb9e6639f145081fea9cae2d8f3a26379", "data/")],
    },
    "study-outputs": {
        "title": "The study's released summarization outputs (32 runs x 400) and the authors' metrics",
        "source": "BillHoweLab/lab-scale-ai @ 6bed44004d599938734770063a5ec76794f7a3ad (branch beanham)",
        "licence": "none stated (the authors' research data; cite the study)",
        "citation": (
            "Wolfe, R., Slaughter, I., Han, B., Wen, B., Yang, Y., Rosenblatt, L., Herman, B., Brown, E., Qu, Z., "
            "Weber, N., & Howe, B. (2024). Laboratory-Scale AI: Open-Weight Models are Competitive with ChatGPT "
            "Even in Low-Resource Settings. FAccT 2024. https://doi.org/10.1145/3630106.3658966"
        ),
        "note": "Flat in tasks/results/ upstream; stored under summarization/ here.",
        "rules": [
            ("summarization/", "BillHoweLab/lab-scale-ai", "6bed44004d599938734770063a5ec76794f7a3ad", "tasks/results/")
        ],
    },
    "truthfulqa": {
        "title": "TruthfulQA",
        "source": "newBlanco/Modified_truthX @ 39e91d49c5b26bdef976da70be6c12829739e83e, folder TruthfulQA/ "
        "(a verbatim copy of sylinrl/TruthfulQA)",
        "licence": "Apache-2.0",
        "citation": (
            "Lin, S., Hilton, J., & Evans, O. (2022). TruthfulQA: Measuring How Models Mimic Human Falsehoods. "
            "ACL 2022."
        ),
        "note": "The URLs point at a verbatim copy of sylinrl/TruthfulQA inside another repository (no commit of "
        "the official repository was recorded when the files were copied).",
        "rules": [("", "newBlanco/Modified_truthX", "39e91d49c5b26bdef976da70be6c12829739e83e", "TruthfulQA/")],
    },
    "viggo": {
        "title": "ViGGO video-game data-to-text corpus",
        "source": "jjuraska/data2text-nlg @ 0f1fbbd8ac623cdb602e3f35f32e49f35dd1db5b",
        "licence": "none stated in the repository (check the dataset's website before redistributing)",
        "citation": (
            "Juraska, J., Bowden, K. K., & Walker, M. (2019). ViGGO: A Video Game Corpus for Data-To-Text "
            "Generation in Open-Domain Conversation. INLG 2019."
        ),
        "rules": [("", "jjuraska/data2text-nlg", "0f1fbbd8ac623cdb602e3f35f32e49f35dd1db5b", "data/video_game/")],
    },
}


def url_for(spec: dict, path: str) -> tuple[str, str | None]:
    """(canonical URL, note) of the local ``path`` of a dataset described by ``spec``."""
    original = spec.get("renamed", {}).get(path, path)
    note = f"original name: {original.rsplit('/', 1)[-1]}" if original != path else None
    for local, repo, commit, remote in spec["rules"]:  # a prefix ("" or ending in "/") or one file
        if local == "" or (local.endswith("/") and original.startswith(local)):
            rest = remote + original[len(local) :]
        elif original == local:
            rest = remote
        else:
            continue
        return RAW.format(repo=repo, commit=commit, path=quote(rest)), note
    raise SystemExit(f"no source rule for {path!r}")


def build(root: Path) -> dict:
    described = registry.describe_folder(root)
    unknown = sorted(set(described) - set(SOURCES))
    if unknown:
        raise SystemExit(f"no provenance written down for {', '.join(unknown)}: add them to SOURCES")
    missing = sorted(set(SOURCES) - set(described))
    if missing:
        raise SystemExit(f"{root} has no folder for {', '.join(missing)}")
    out = {}
    for name, spec in SOURCES.items():
        entry = {k: spec[k] for k in ("title", "source", "licence", "citation")}
        if spec.get("note"):
            entry["note"] = spec["note"]
        entry["files"] = []
        for path, info in described[name].items():
            url, note = url_for(spec, path)
            item = {"path": path, "url": url, "sha256": info["sha256"], "size": info["size"]}
            if note:
                item["note"] = note
            entry["files"].append(item)
        out[name] = entry
    return {
        "about": "Every external file labscale reads. Generated by tools/make_registry.py; do not edit by hand.",
        "format": 1,
        "datasets": dict(sorted(out.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="release files laid out <dataset>/<path>")
    parser.add_argument("--check", action="store_true", help="compare with the registry instead of writing it")
    parser.add_argument("--output", type=Path, default=registry.REGISTRY_FILE)
    args = parser.parse_args(argv)
    text = json.dumps(build(args.folder), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        same = args.output.is_file() and args.output.read_text(encoding="utf-8") == text
        print(f"{args.output}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    args.output.write_text(text, encoding="utf-8")
    data = json.loads(text)["datasets"]
    n_files = sum(len(d["files"]) for d in data.values())
    size = sum(f["size"] for d in data.values() for f in d["files"])
    print(f"wrote {args.output}: {len(data)} datasets, {n_files} files, {size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
