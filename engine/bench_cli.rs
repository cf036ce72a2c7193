//! Command-line helpers shared by the workspace's criterion benches (included with `#[path]` by each
//! `benches/*.rs`, so they need no crate of their own).

/// The benchmark filter (criterion's positional argument), if any.
pub(crate) fn filter_arg(args: &[String]) -> Option<&str> {
    const WITH_VALUE: &[&str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--format",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Whether a benchmark may pass the filter: no filter, a regex (then let criterion decide), or a plain substring
/// of one of its ids. A bench skips the setup of benchmarks that cannot run.
pub(crate) fn wanted(filter: Option<&str>, ids: &[&str]) -> bool {
    match filter {
        None => true,
        Some(f) if f.chars().any(|c| "\\.*+?()[]{}|^$".contains(c)) => true,
        Some(f) => ids.iter().any(|id| id.contains(f)),
    }
}

/// Whether criterion measures (`cargo bench` passes `--bench`); without it each benchmark runs once as a test.
pub(crate) fn measuring(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list")
}
