//! Process trees: every trial's `nix-build` runs in its own process group, and a timeout or Ctrl-C
//! kills the whole tree under it, including builders that Nix moved into their own session
//! (`setsid`) and the QEMU processes they started, so nothing is left running.
//!
//! Process groups alone are not enough: Nix puts each builder into a new session, so the tree is
//! found by walking parent links in `/proc`, and every process is identified by (pid, start time)
//! so that a reused pid is never signalled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A process, identified across pid reuse by its start time (in clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcId {
    /// The process id.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`.
    pub start_time: u64,
}

/// One line of `/proc/<pid>/stat`, reduced to what tree walking needs.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: i32,
    state: char,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state); ppid is field 4, starttime field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// All processes on the machine with their parent, read from `/proc`.
fn process_table() -> BTreeMap<i32, Stat> {
    let mut table = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok())
                && let Some(stat) = read_stat(pid)
            {
                table.insert(pid, stat);
            }
        }
    }
    table
}

/// Identifies a live process by pid, or `None` when it is gone.
pub fn proc_id(pid: i32) -> Option<ProcId> {
    read_stat(pid).map(|s| ProcId {
        pid,
        start_time: s.start_time,
    })
}

/// Whether `id` is still the same process and not a zombie (a zombie has already exited).
pub fn is_alive(id: ProcId) -> bool {
    matches!(read_stat(id.pid), Some(s) if s.start_time == id.start_time && s.state != 'Z' && s.state != 'X')
}

/// `roots` and all their live descendants.
pub fn tree(roots: &[ProcId]) -> BTreeSet<ProcId> {
    let table = process_table();
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (&pid, stat) in &table {
        children.entry(stat.ppid).or_default().push(pid);
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<i32> = Vec::new();
    for root in roots {
        if let Some(stat) = table.get(&root.pid)
            && stat.start_time == root.start_time
        {
            stack.push(root.pid);
        }
    }
    while let Some(pid) = stack.pop() {
        let Some(stat) = table.get(&pid) else {
            continue;
        };
        if !out.insert(ProcId {
            pid,
            start_time: stat.start_time,
        }) {
            continue;
        }
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids);
        }
    }
    out
}

fn signal(id: ProcId, sig: i32) {
    // Re-check identity right before signalling so that a reused pid is left alone.
    if is_alive(id) {
        // SAFETY: kill(2) with a pid we just verified; no memory is involved.
        unsafe {
            libc::kill(id.pid, sig);
        }
    }
}

/// What a tree kill did, for the trial's log.
#[derive(Debug, Clone, Default)]
pub struct KillReport {
    /// Every process of the tree that was seen (and signalled).
    pub seen: Vec<ProcId>,
    /// Processes still alive at the end (should be empty: anything here is an orphan).
    pub survivors: Vec<ProcId>,
}

/// Kills the process tree under `root` (which leads process group `pgid`): SIGTERM first so that
/// `nix-build` can stop its builders and clean up, then, after `grace`, SIGKILL to everything of the
/// tree that is still alive. Waits until the tree is gone (or a few seconds more have passed).
pub fn kill_tree(root: ProcId, pgid: i32, grace: Duration) -> KillReport {
    let mut known: BTreeSet<ProcId> = tree(&[root]);
    let refresh = |known: &mut BTreeSet<ProcId>| {
        let roots: Vec<ProcId> = known.iter().copied().collect();
        known.extend(tree(&roots));
    };
    for &id in &known {
        signal(id, libc::SIGTERM);
    }
    // SAFETY: killpg(2) on the group we created for this trial.
    unsafe {
        libc::killpg(pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        refresh(&mut known);
        if !known.iter().any(|&id| is_alive(id)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let hard_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        refresh(&mut known);
        let alive: Vec<ProcId> = known.iter().copied().filter(|&id| is_alive(id)).collect();
        if alive.is_empty() || Instant::now() >= hard_deadline {
            // SAFETY: as above.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
            return KillReport {
                seen: known.into_iter().collect(),
                survivors: alive,
            };
        }
        // Stop first so that nothing forks while the rest is being killed.
        for &id in &alive {
            signal(id, libc::SIGSTOP);
        }
        for &id in &alive {
            signal(id, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running trial's process tree, as the Ctrl-C handler sees it.
#[derive(Debug, Clone, Copy)]
struct Running {
    root: ProcId,
    pgid: i32,
}

/// The process trees of all running trials, so that Ctrl-C (or SIGTERM) can kill every one of them.
#[derive(Debug, Default)]
pub struct Registry {
    running: Mutex<BTreeMap<u64, Running>>,
    next: Mutex<u64>,
}

/// Removes its tree from the registry when the trial no longer owns it.
#[derive(Debug)]
pub struct Registration<'a> {
    registry: &'a Registry,
    key: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.registry.running.lock() {
            running.remove(&self.key);
        }
    }
}

impl Registry {
    /// Records a trial's tree (root process, which leads group `pgid`) until the guard is dropped.
    pub fn register(&self, root: ProcId, pgid: i32) -> Registration<'_> {
        let key = {
            let mut next = self.next.lock().expect("registry lock");
            *next += 1;
            *next
        };
        self.running
            .lock()
            .expect("registry lock")
            .insert(key, Running { root, pgid });
        Registration {
            registry: self,
            key,
        }
    }

    /// Kills every registered tree (used on Ctrl-C/SIGTERM); returns how many processes were seen.
    pub fn kill_all(&self, grace: Duration) -> (usize, usize) {
        let running: Vec<Running> = self
            .running
            .lock()
            .map(|r| r.values().copied().collect())
            .unwrap_or_default();
        let handles: Vec<_> = running
            .into_iter()
            .map(|r| std::thread::spawn(move || kill_tree(r.root, r.pgid, grace)))
            .collect();
        let mut seen = 0;
        let mut survivors = 0;
        for h in handles {
            if let Ok(report) = h.join() {
                seen += report.seen.len();
                survivors += report.survivors.len();
            }
        }
        (seen, survivors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn kills_a_tree_whose_members_left_the_process_group() {
        // A shell in its own group starts a child that moves to a new session (like Nix's
        // builders do) and a grandchild there; all must die.
        let token = format!("fedigen-kill-test-{}", std::process::id());
        let script =
            format!("setsid sh -c 'sleep 1000 & sleep 1001; : {token}' & sleep 1002; : {token}");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .process_group(0)
            .spawn()
            .unwrap();
        let root = proc_id(child.id() as i32).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while tree(&[root]).len() < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = tree(&[root]);
        assert!(before.len() >= 5, "tree not started: {before:?}");
        let report = kill_tree(root, root.pid, Duration::from_millis(200));
        let _ = child.wait();
        assert!(report.survivors.is_empty(), "{report:?}");
        for id in before {
            assert!(!is_alive(id), "{id:?} survived");
        }
    }
}
