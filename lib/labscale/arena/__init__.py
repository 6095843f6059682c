"""Head to head: pairwise battles between runs on the same items, judges, and ratings (Elo, Bradley-Terry).

* :mod:`labscale.arena.battles`: the battle table, its pairs and seeded presentation orders.
* :mod:`labscale.arena.judges`: battles from run records by gold labels, reference similarity or an LLM judge
  (MT-Bench's pairwise prompt, both orders, recorded through the run protocol).
* :mod:`labscale.arena.sheets`: people as judges, through a blinded annotation sheet and its key.
* :mod:`labscale.arena.ratings`: online Elo as the surveys compute it, Bradley-Terry by maximum likelihood, their
  intervals, win-rate matrices and calibration, and the judge-quality gate.
"""
