#!/usr/bin/env python3
"""Shows that each loom model has teeth: applies, one at a time, the
mutation docs/model-checking.md names for a model to a scratch copy of the crate, runs
that model alone, and reports whether it failed (it must). Not part of CI:
each mutation rebuilds the crate under loom.

    python3 loom-tests/mutants.py            # every mutation
    python3 loom-tests/mutants.py fifo lease # those whose name contains a word

Exits non-zero if any mutation survived its model.
"""

import os
import shutil
import subprocess
import sys
import tempfile

# (name, file, original text, mutated text, model to run)
MUTATIONS = [
    (
        "fifo: grant the newest waiter, not the oldest",
        "src/core/waiters.rs",
        "let bound = self.by_conn.get(&conn).and_then(|q| q.tickets.first());",
        "let bound = self.by_conn.get(&conn).and_then(|q| q.tickets.last());",
        "fifo_in_arrival_order",
    ),
    (
        "lease: a park into a recalled lease is taken as done",
        "src/driver/lease.rs",
        "        self.holder.store(NOBODY, Ordering::Relaxed);\n        self.cell.put(conn, now)",
        "        self.holder.store(NOBODY, Ordering::Relaxed);\n        let _ = self.cell.put(conn, now);\n        Ok(())",
        "fast_path_vs_waiter_registration",
    ),
    (
        "exit: a dying owner's lease is not recalled",
        "src/driver/inner.rs",
        "        self.recall_leases(Recall::Owner(owner));\n        self.core.owner_gone(owner);",
        "        self.core.owner_gone(owner);",
        "parking_vs_owner_exit",
    ),
    (
        "co-owner: taking a shared lease leaves the core naming the grantee holder",
        "src/driver/inner.rs",
        "        driver_bug(self.core.note_lease_holder(conn, None));\n",
        "",
        "co_owners_share_a_lease",
    ),
    (
        "co-owner: an owner holding its shared lease's connection is not reported",
        "src/driver/lease.rs",
        "            if lease.held_by(owner) {\n                held(lease);\n            }",
        "            let _ = held;",
        "co_owners_share_a_lease",
    ),
    (
        "recall: the cell is left open, so a holder parks into an ended lease",
        "src/sync.rs",
        "        let taken = self.ptr.swap(Self::closed(), Ordering::SeqCst);",
        "        let taken = self.ptr.swap(ptr::null_mut(), Ordering::SeqCst);",
        "stash_two_connections_all_complete",
    ),
    (
        "cancel: a grant that raced the drop is not checked back in",
        "src/driver/mod.rs",
        "        if let Some(Outcome::Granted(handed)) = slot.take() {\n            self.give_back(handed, Health::Healthy);\n        }",
        "        drop(slot.take());",
        "async_cancel_vs_grant",
    ),
    (
        "timeout: a grant that raced the deadline is dropped",
        "src/driver/mod.rs",
        "            Some(Outcome::Granted(handed)) => Ok(handed),\n            Some(Outcome::Failed(error)) => Err(error),\n            Some(Outcome::Woken) | None => {",
        "            Some(Outcome::Granted(_)) => Err(self.timed_out(waited)),\n            Some(Outcome::Failed(error)) => Err(error),\n            Some(Outcome::Woken) | None => {",
        "timeout_vs_grant",
    ),
    (
        "reclamation: a dying thread does not report its owner gone",
        "src/blocking/pins.rs",
        "                    pool.owner_gone(owner)\n                }));",
        "                    let _ = (&pool, owner);\n                }));",
        "exiting_threads_release_their_pins",
    ),
    (
        "owner gone: its waiting checkouts are forgotten, not failed",
        "src/core/mod.rs",
        "        self.fail_waiters(tickets, FailReason::OwnerGone);",
        "        for ticket in tickets {\n            self.waiters.remove(ticket);\n        }",
        "get_outliving_its_scope_vs_grant",
    ),
    (
        "close: waiters are not failed",
        "src/core/lifecycle.rs",
        "self.fail_all_waiters(FailReason::PoolClosed);",
        "",
        "close_vs_checkouts",
    ),
    (
        "stash: a park into a recalled cell is taken as done",
        "src/driver/stash.rs",
        "        self.cells[lease.cell].lease.put(conn, now)",
        "        let _ = self.cells[lease.cell].lease.put(conn, now);\n        Ok(())",
        "guard_dropped_on_another_thread",
    ),
    (
        "eventual: nobody is woken beside an idle connection",
        "src/core/mod.rs",
        "        if !self.config.wake.barges() || self.waiters.len() == 0 {",
        "        if true {",
        "eventual_two_connections_all_complete",
    ),
    (
        "affinity: an owner is handed its last connection though it is busy",
        "src/core/mod.rs",
        "                .filter(|&conn| self.slots.is_idle(conn))",
        "                .filter(|&conn| self.slots.get(conn).is_some())",
        "affinity_two_connections_all_complete",
    ),
    (
        "connect failure: the checkout that asked is not told",
        "src/core/mod.rs",
        "            self.fail_waiter(ticket, waiter, reason);",
        "            let _ = (ticket, waiter, reason);",
        "connect_failure_vs_waiter",
    ),
    (
        "exclusive: a released pin's connection is not reset",
        "src/core/mod.rs",
        "        self.config.reset != Reset::Never\n            && slot.dirty",
        "        self.config.reset == Reset::Never\n            && slot.dirty",
        "exclusive_exit_resets_for_the_waiter",
    ),
    (
        "reset: a reset connection goes idle though the pool moved on",
        "src/core/mod.rs",
        "        if ok {\n            self.release(conn, WakePolicy::Handoff);",
        "        if ok {\n            self.slots.set_idle(conn, self.now);",
        "reset_vs_clear",
    ),
    (
        "connect: an opened connection is left idle beside the waiter that asked",
        "src/core/mod.rs",
        "        self.event(Event::ConnectionReady { conn, took });\n        self.release(conn, WakePolicy::Handoff);",
        "        self.event(Event::ConnectionReady { conn, took });\n        self.slots.set_idle(conn, self.now);",
        "connect_on_its_own_thread",
    ),
    (
        "timeout: a waiter that timed out is not withdrawn from the core",
        "src/driver/mod.rs",
        "        if self.core.time_out(ticket) {\n            self.waiters.remove(&ticket);",
        "        if true {\n            self.waiters.remove(&ticket);",
        "a_parked_waiter_times_out_vs_grant",
    ),
    (
        "clear: idle connections are left idle, not closed as stale",
        "src/core/lifecycle.rs",
        "        for conn in stale {\n            self.retire(conn, CloseReason::Stale);\n        }",
        "        drop(stale);",
        "clear_vs_checkouts",
    ),
    (
        "unpin: the pin is not released",
        "src/core/mod.rs",
        "    pub fn unpin(&mut self, owner: OwnerId) {\n        if let Some(conn) = self.drop_pin(owner) {",
        "    pub fn unpin(&mut self, owner: OwnerId) {\n        if let Some(conn) = self.pins.get(&owner).copied() {",
        "unpin_vs_checkouts",
    ),
    (
        "shutdown: a close left under the lock is not counted as under way",
        "src/driver/effects.rs",
        "        if !std::mem::replace(&mut more.closing, true) {\n            shut_down.close_started();\n        }",
        "        let _ = shut_down;",
        "close_and_wait_vs_checkins",
    ),
    (
        "shutdown: the threads waiting for it are not woken",
        "src/driver/shutdown.rs",
        "        for thread in threads {\n            thread.unpark();\n        }",
        "        drop(threads);",
        "close_and_wait_vs_checkins",
    ),
    (
        "handoff: a checkin leaves the connection idle beside its waiter",
        "src/core/mod.rs",
        "                Some(ticket) => self.grant(ticket, conn),\n                None => self.slots.set_idle(conn, self.now),",
        "                Some(_) | None => self.slots.set_idle(conn, self.now),",
        "handoff_two_connections_all_complete",
    ),
]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    words = sys.argv[1:]
    chosen = [m for m in MUTATIONS if not words or any(w in m[0] for w in words)]
    target = os.path.join(root, "loom-tests", "target")  # shared: deps build once
    survived = []
    with tempfile.TemporaryDirectory() as scratch:
        copy = os.path.join(scratch, "pinpool")
        shutil.copytree(
            root,
            copy,
            ignore=shutil.ignore_patterns("target", ".git", "*.svg"),
        )
        for name, path, original, mutated, model in chosen:
            file = os.path.join(copy, path)
            text = open(file).read()
            if original not in text:
                sys.exit(f"{name}: the code to mutate is gone from {path}; update this script")
            open(file, "w").write(text.replace(original, mutated, 1))
            env = dict(
                os.environ,
                RUSTFLAGS="--cfg pinpool_loom",
                CARGO_TARGET_DIR=target,
                LOOM_MAX_PREEMPTIONS=os.environ.get("LOOM_MAX_PREEMPTIONS", "3"),
                RUST_BACKTRACE="0",
            )
            cargo = ["cargo", "test", "--release", "--test", "models"]
            where = os.path.join(copy, "loom-tests")
            build = subprocess.run(cargo + ["--no-run"], cwd=where, env=env,
                                   capture_output=True, text=True)
            if build.returncode != 0:
                open(file, "w").write(text)
                sys.exit(f"{name}: the mutant does not build:\n{build.stderr[-2000:]}")
            run = subprocess.run(cargo + ["--", "--exact", model, "--test-threads=1"],
                                 cwd=where, env=env, capture_output=True, text=True)
            open(file, "w").write(text)
            caught = run.returncode != 0
            print(f"{'caught  ' if caught else 'SURVIVED'} {model}: {name}", flush=True)
            if not caught:
                survived.append(name)
    if survived:
        sys.exit(f"{len(survived)} mutation(s) survived")


if __name__ == "__main__":
    main()
