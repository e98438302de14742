"""Run by test_dsi.py under `accelerate launch` with two CPU processes: load a saved DsiRetriever, search the
queries of a JSON file, and write what each process saw to OUT/rank-<i>.json (its share of the queries and the
gathered Run) and the gathered Run once, from the main process, to OUT/run.json.

usage: _ddp_search.py RETRIEVER_DIR QUERIES_JSON OUT_DIR K
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from genret.retrievers import base
from genret.retrievers.dsi import DsiRetriever

folder, queries_file, out, k = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
retriever = DsiRetriever.from_pretrained(folder, device="cpu")
queries = json.loads(Path(queries_file).read_text())

# record which queries this process searched itself (search_in_batches hands its share to _search_batches)
searched: list[str] = []
own_search = base._search_batches


def recording(search_texts, doc_ids, qids: list[str], *args, **kwargs):
    searched.extend(qids)
    return own_search(search_texts, doc_ids, qids, *args, **kwargs)


base._search_batches = recording
run = retriever.search(queries, k=k, progress=False)
state = PartialState()  # the state search() set up (made here first, without cpu=True, it would be single-process)

report = {"rank": state.process_index, "num_processes": state.num_processes, "searched": searched, "run": run}
(out / f"rank-{state.process_index}.json").write_text(json.dumps(report))
if state.is_main_process:
    (out / "run.json").write_text(json.dumps(run))
