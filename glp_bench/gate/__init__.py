"""The CI gate: the decision rule over raw samples (``decide``), its inputs from run directories and
baselines (``inputs``), the structural check (``structure``) and its report (``render``). The A/B
measurement itself is ``glp_bench.bench.alternating``. The score gate (``--scores``): its sides
(``score_sides``), its pure decision (``score_decide``) and its stage and document (``score_stage``)."""
