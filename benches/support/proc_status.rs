//! This process's memory figures from `/proc/self/status` (Linux), shared
//! by the benches through `#[path]`.

/// A `kB` field of a `/proc/self/status` text, such as `VmHWM`, in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The field `field` of `/proc/self/status` now, in KiB.
pub fn read_kib(field: &str) -> Option<u64> {
    status_kib(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}
