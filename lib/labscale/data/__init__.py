"""All data access: every release-file reader, hub loader and offline generator of the tasks lives here.

One module per task's dataset holds that task's three loaders, ``load_offline``, ``load_local`` and ``load_hub``
(each ``(path=None, *, seed=0, **options) -> TaskData``; a task's ``_load_<source>`` is one call into it):

==========================  ======================  ==================================================
module                      task                    offline data from
==========================  ======================  ==================================================
:mod:`.deeds_voting`        ``entity_resolution``   :mod:`.febrl_pairs` (local: :mod:`.magellan`)
:mod:`.climate_fever`       ``fact_checking``       :mod:`.synthetic_claims`
:mod:`.mts_dialog`          ``summarization``       :mod:`.synthetic_dialogues`
:mod:`.civil_comments`      ``toxicity``            :mod:`.synthetic_comments`
:mod:`.bbq`                 ``bbq``                 :mod:`.bbq_templates`
:mod:`.medqa`               ``medqa_tf``            :mod:`.synthetic_patients`
:mod:`.qasper`              ``qasper``              :mod:`.fictional_papers`
:mod:`.squad_v2`            ``squad_v2``            :mod:`.fictional_papers`
:mod:`.spider`              ``text_to_sql``         none (local: Spider dev; hub: sql-create-context)
:mod:`.viggo`               both ViGGO tasks        none (local: the ViGGO release CSVs; hub: GEM/viggo)
==========================  ======================  ==================================================

:mod:`.hub` is the one way to the Hugging Face hub (:func:`.hub.load_hub_splits`, the split loop every hub loader
uses, and :func:`.hub.download_hub_file`); :mod:`.text` holds the generators' wording helpers. The modules here
build on :mod:`labscale.core` and never import :mod:`labscale.tasks`.
"""
