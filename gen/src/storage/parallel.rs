//! Independent provisioning jobs (one key, or one bucket with its permissions) run on several admin-API
//! clients at once.
//!
//! Why: each authenticated admin call costs Garage an argon2 verification of the token on one of its worker
//! threads (see [`super::inventory`]); calls on several connections are verified on several cores at once,
//! while one connection waits for each answer in turn. A job runs wholly on one client, so its calls keep
//! their order (create a bucket, then set its website, then allow its keys); jobs never depend on each other.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::client::Admin;

/// Jobs that never ran although none failed (never expected: jobs stop being handed out only after a failure).
/// The caller's error type says it in its own words (`From<Incomplete>`), so this module depends on no caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Incomplete;

/// Runs every job with `work`, on `admin` alone when `extra` is empty, else on the `extra` clients, one
/// thread each. Results come back in job order; after a job fails no new job starts, and the error of the
/// first failed job (in job order) is returned.
pub(crate) fn run<J, R, E>(
    admin: &mut dyn Admin,
    extra: &mut [Box<dyn Admin + Send + '_>],
    jobs: &[J],
    work: &(dyn Fn(&mut dyn Admin, &J) -> Result<R, E> + Sync),
) -> Result<Vec<R>, E>
where
    J: Sync,
    R: Send,
    E: Send + From<Incomplete>,
{
    if extra.len() <= 1 || jobs.len() <= 1 {
        let client: &mut dyn Admin = match extra.first_mut() {
            Some(c) => c.as_mut(),
            None => admin,
        };
        return jobs.iter().map(|j| work(client, j)).collect();
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for client in extra.iter_mut() {
            let (next, stop, results) = (&next, &stop, &results);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let result = work(client.as_mut(), job);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(jobs.len());
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            // Not started because an earlier-started job failed: that failure is further on.
            None => continue,
        }
    }
    if out.len() < jobs.len() {
        // Jobs stop being handed out only after a failure, which the loop returns: never reached, but
        // never report success for jobs that did not run.
        return Err(Incomplete.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::client::ApiError;
    use serde_json::Value;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Job(usize),
        Incomplete,
    }
    impl From<Incomplete> for TestError {
        fn from(_: Incomplete) -> Self {
            TestError::Incomplete
        }
    }

    struct Null;
    impl Admin for Null {
        fn get(&mut self, _: &str, _: &[(&str, &str)]) -> Result<Value, ApiError> {
            Ok(Value::Null)
        }
        fn post(&mut self, _: &str, _: &[(&str, &str)], _: &Value) -> Result<Value, ApiError> {
            Ok(Value::Null)
        }
    }

    fn clients(n: usize) -> Vec<Box<dyn Admin + Send>> {
        (0..n)
            .map(|_| Box::new(Null) as Box<dyn Admin + Send>)
            .collect()
    }

    #[test]
    fn results_keep_job_order_and_every_job_runs_once() {
        let jobs: Vec<usize> = (0..500).collect();
        let count = AtomicUsize::new(0);
        let work = |_: &mut dyn Admin, j: &usize| {
            count.fetch_add(1, Ordering::Relaxed);
            Ok::<_, TestError>(j * 2)
        };
        for n in [0, 1, 4] {
            count.store(0, Ordering::Relaxed);
            let out = run(&mut Null, &mut clients(n), &jobs, &work).unwrap();
            assert_eq!(out, jobs.iter().map(|j| j * 2).collect::<Vec<_>>());
            assert_eq!(count.load(Ordering::Relaxed), 500);
        }
    }

    #[test]
    fn a_failure_is_returned_and_stops_new_jobs() {
        let jobs: Vec<usize> = (0..500).collect();
        let count = AtomicUsize::new(0);
        let work = |_: &mut dyn Admin, j: &usize| {
            count.fetch_add(1, Ordering::Relaxed);
            if *j == 10 {
                Err(TestError::Job(10))
            } else {
                Ok(())
            }
        };
        for n in [1, 4] {
            count.store(0, Ordering::Relaxed);
            let e = run(&mut Null, &mut clients(n), &jobs, &work).unwrap_err();
            assert_eq!(e, TestError::Job(10));
            assert!(
                count.load(Ordering::Relaxed) < 100,
                "jobs went on after the failure"
            );
        }
    }
}
