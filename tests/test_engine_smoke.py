from __future__ import annotations

import raytha_nb as rnb


def test_function_task_completes(mgr: rnb.TaskManager) -> None:
    job = rnb.enqueue(lambda a: a * 2, {"a": 21})
    record = rnb.wait(job, timeout=10)
    assert record.status is rnb.TaskStatus.COMPLETE
    assert rnb.result(job) == 42
