"""What `laclip status` makes of the objects it reads (laclip_jobs.status): index sets, ETAs, which
runs and events count, one line for many pods with one problem, eval Jobs per checkpoint, Kueue's
reason. Pure functions on API-shaped objects; the cluster round trips are in test_ops_status.py."""

from __future__ import annotations

import datetime as dt

import pytest

from laclip_jobs.status import format_indexes, parse_indexes, rate_and_eta, summarise

from .status_objects import EVAL, NOW, REWRITE, TRAIN, UNSCHEDULABLE, event, job, pod, ts


def test_index_sets_and_eta():
    assert parse_indexes("0-2,5,7-8") == [0, 1, 2, 5, 7, 8]
    assert format_indexes([8, 7, 5, 2, 1, 0]) == "0-2,5,7-8"
    assert parse_indexes("") == [] and format_indexes([]) == ""
    rate, eta = rate_and_eta(10, 40, NOW - dt.timedelta(hours=2), NOW)
    assert rate == pytest.approx(5.0) and eta == dt.timedelta(hours=6)
    assert rate_and_eta(0, 40, NOW, NOW) == (None, None)


def test_summarise_ignores_other_runs_and_succeeded_noise():
    other = job("other-run", "rewrite", "other", {"completions": 2, "completionMode": "Indexed"},
                {"completedIndexes": "0-1"})
    done = job(EVAL, "eval", EVAL, {"completions": 1}, {"succeeded": 1, "startTime": ts(9), "completionTime": ts(1),
                                                       "conditions": [{"type": "Complete", "status": "True"}]})
    old = event(EVAL, "Job", "BackoffLimitExceeded", "old warning")
    st = summarise(EVAL, [other, done], [], [old]).stages
    assert list(st) == ["eval"] and st["eval"].state == "Succeeded" and st["eval"].reasons == []


def test_many_pods_with_one_problem_make_one_line():
    """500 shards stuck on the same quota must not print 500 lines; a pod that got scheduled
    since its FailedScheduling event is no longer reported."""
    j = job(REWRITE, "rewrite", REWRITE, {"completions": 4, "completionMode": "Indexed"}, {"active": 4})
    stuck = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": UNSCHEDULABLE}]}
    pods = [pod(REWRITE, "rewrite", f"{REWRITE}-{i}-x", "Pending", i, stuck) for i in range(3)]
    pods.append(pod(REWRITE, "rewrite", f"{REWRITE}-3-x", "Running", 3))
    events = [event(p["metadata"]["name"], "Pod", "FailedScheduling", UNSCHEDULABLE) for p in pods]
    st = summarise(REWRITE, [j], pods, events).stages["rewrite"]
    assert st.reasons == [f"3 pods ({REWRITE}-0-x, {REWRITE}-1-x, ...): unschedulable: {UNSCHEDULABLE}",
                          f"3 pods ({REWRITE}-0-x, {REWRITE}-1-x, ...): FailedScheduling: {UNSCHEDULABLE}"]


def test_eval_jobs_per_checkpoint_add_up():
    """Training queues an eval Job per checkpoint under its own run id: three finished Jobs are
    three completions of three, not one (their indexes all start at 0)."""
    done = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    jobs = [job(TRAIN, "eval", f"eval-{TRAIN}-step-{n}", {"completions": 1}, done) for n in (1, 2)]
    jobs.append(job(TRAIN, "eval", f"eval-{TRAIN}-step-3", {"completions": 2, "completionMode": "Indexed"},
                    {"completedIndexes": "0", "failedIndexes": "1",
                     "conditions": [{"type": "Failed", "status": "True"}]}))
    st = summarise(TRAIN, jobs, [], []).stages["eval"]
    assert (st.completions, st.completed, st.failed) == (4, [0, 1, 2], [3])


def test_kueue_reason_is_what_blocks_admission():
    from laclip_jobs.status import workload_reason

    def wl(*conditions):
        return {"spec": {"queueName": "laclip-a100"},
                "status": {"conditions": [{"type": t, "status": s, "message": m} for t, s, m in conditions]}}

    reserved = ("QuotaReserved", "True", "Quota reserved in ClusterQueue laclip")
    # quota reserved, admission checks pending: the reserved quota is not why it waits
    assert workload_reason(wl(reserved, ("Admitted", "False", "The workload has not all checks ready"))) \
        == "Kueue: The workload has not all checks ready"
    assert workload_reason(wl(("QuotaReserved", "False", "insufficient quota"),
                              ("Evicted", "True", "Preempted to accommodate a higher priority Workload"))) \
        == "Kueue: Preempted to accommodate a higher priority Workload"
    # a finished Workload (newer Kueue clears Admitted on finish) waits for nothing
    assert workload_reason(wl(("Admitted", "False", "The workload has no reservation"),
                              ("Finished", "True", "Job finished successfully"))) is None
    assert workload_reason(wl()) == "Kueue: waiting for admission in LocalQueue laclip-a100"
