//! Which cores the shards run on: the `--cores` list syntax, the process's allowed CPUs,
//! and pinning a thread to one of them.

use std::collections::BTreeSet;
use std::str::FromStr;

/// A `--cores` list, e.g. `0-3,6`: one value on the command line, ascending cores inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

impl FromStr for CoreList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_list(s).map(CoreList)
    }
}

/// Core numbers go up to the kernel's CPU set size (`CPU_SETSIZE`).
const MAX_CORES: usize = libc::CPU_SETSIZE as usize;

/// Parses a core list such as `0-3,6` into ascending core numbers.
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cores = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |n: &str| match n.trim().parse::<usize>() {
            Ok(core) if core < MAX_CORES => Ok(core),
            Ok(core) => Err(format!("core {core} out of range (0-{})", MAX_CORES - 1)),
            Err(_) => Err(format!("bad core number {n:?} in {s:?}")),
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("bad core range {part:?}: {a} > {b}"));
                }
                cores.extend(a..=b);
            }
            None => {
                cores.insert(number(part)?);
            }
        }
    }
    if cores.is_empty() {
        return Err(format!("no cores in {s:?}"));
    }
    Ok(cores.into_iter().collect())
}

/// The CPUs this process may run on (its affinity mask).
pub fn available() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data for which all-zero is a valid (empty) set;
    // sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET
    // only reads it for indexes below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..MAX_CORES)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// The core of each shard: the `--cores` list as given (every core must be available), or
/// `threads` shards on cores 0, 1, ... of the available ones (wrapping around when there
/// are more shards than cores), or one shard per available core.
pub fn plan(
    cores: Option<&[usize]>,
    threads: Option<usize>,
    available: &[usize],
) -> Result<Vec<usize>, String> {
    if available.is_empty() {
        return Err("no CPU available to this process".into());
    }
    match (cores, threads) {
        (Some(cores), _) => {
            if let Some(missing) = cores.iter().find(|c| !available.contains(c)) {
                return Err(format!(
                    "core {missing} is not available to this process (available: {available:?})"
                ));
            }
            Ok(cores.to_vec())
        }
        (None, Some(0)) => Err("--threads must be at least 1".into()),
        (None, Some(n)) => Ok((0..n).map(|i| available[i % available.len()]).collect()),
        (None, None) => Ok(available.to_vec()),
    }
}

/// Pins the calling thread to `core`.
pub fn pin(core: usize) -> std::io::Result<()> {
    monoio::utils::bind_to_cpu_set([core]).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists_parse_ranges_and_singles() {
        assert_eq!(parse_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_list("2").unwrap(), vec![2]);
        assert_eq!(parse_list("1,1,0").unwrap(), vec![0, 1]);
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("x").is_err());
        assert!(parse_list("").is_err());
        assert!(parse_list(",").is_err());
        assert!(parse_list("0-99999999999").is_err());
        assert!(parse_list("1-").is_err());
        assert!(parse_list("-1").is_err());
        assert!(parse_list("0-3,x").is_err());
        assert_eq!("0,1".parse::<CoreList>(), Ok(CoreList(vec![0, 1])));
    }

    #[test]
    fn plans_follow_cores_threads_or_the_machine() {
        let two = [0, 1];
        assert_eq!(plan(None, None, &two).unwrap(), vec![0, 1]);
        assert_eq!(plan(None, Some(1), &two).unwrap(), vec![0]);
        assert_eq!(plan(None, Some(4), &two).unwrap(), vec![0, 1, 0, 1]);
        assert_eq!(plan(Some(&[1]), None, &two).unwrap(), vec![1]);
        let err = plan(Some(&[0, 6]), None, &two).unwrap_err();
        assert!(err.contains("core 6"), "{err}");
        assert!(plan(None, Some(0), &two).is_err());
        assert!(!available().is_empty());
    }
}
