//! The `tickgate-loadtest` binary: parses the command line, runs [`tickgate_loadtest::run`]
//! (or merges reports, or runs a `--find-capacity` search), prints the table, writes the
//! outputs and maps the outcome to an exit code: 0 passed (a search: some step passed), 1
//! the run found violations or clients failed (a search: no step passed), 2 bad usage or a
//! client count that cannot fit the open-file limit, 3 the run could not be made (gateway
//! unreachable, server did not start, files, threads).

use std::process::ExitCode;

use clap::Parser;
use tickgate_loadtest::cli::Args;
use tickgate_loadtest::report::{self, Report};
use tickgate_loadtest::{RunError, capacity, plot, run};

/// `--find-capacity`: the search, its table, `--json`; exit 0 when some step passed, 1 when
/// none did, 2/3 as for a run.
fn find_capacity(args: &Args) -> ExitCode {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let mut opts = match args.to_capacity_options(command_line) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tickgate-loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    // Each step's own progress output would bury the step lines.
    opts.base.progress = tickgate_loadtest::options::Progress::Off;
    let report = match capacity::find(&opts, args.quiet) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tickgate-loadtest: --find-capacity: {e}");
            return ExitCode::from(match e {
                RunError::Config(_) | RunError::FdLimit(_) => 2,
                RunError::Setup(_) | RunError::Internal(_) => 3,
            });
        }
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|t| std::fs::write(path, t + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("tickgate-loadtest: writing {}: {e}", path.display());
            return ExitCode::from(3);
        }
    }
    if report.capacity.is_some() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_gateway_args {
        if let Some(p) = args.profile {
            println!("{}", p.profile().gateway_args().join(" "));
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.markdown_row {
        return match Report::load(path) {
            Ok(r) => {
                println!("{}", r.markdown_row());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tickgate-loadtest: {e}");
                ExitCode::from(3)
            }
        };
    }
    if args.find_capacity {
        return find_capacity(&args);
    }
    let report = if args.merge.is_empty() {
        let command_line = std::env::args().collect::<Vec<_>>().join(" ");
        let opts = match args.to_options(command_line) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("tickgate-loadtest: {e}");
                return ExitCode::from(2);
            }
        };
        match run(opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("tickgate-loadtest: {e}");
                return ExitCode::from(match e {
                    RunError::Config(_) | RunError::FdLimit(_) => 2,
                    RunError::Setup(_) | RunError::Internal(_) => 3,
                });
            }
        }
    } else {
        let loaded: Result<Vec<Report>, String> = args.merge.iter().map(|p| Report::load(p)).collect();
        match loaded.and_then(|rs| report::merge(&rs)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("tickgate-loadtest: --merge: {e}");
                return ExitCode::from(3);
            }
        }
    };
    print!("{}", report.table());
    let mut code = if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    if let Some(path) = &args.json
        && let Err(e) = report.save(path)
    {
        eprintln!("tickgate-loadtest: {e}");
        code = ExitCode::from(3);
    }
    if let Some(path) = &args.plot
        && let Err(e) = plot::write(path, &report)
    {
        eprintln!("tickgate-loadtest: {e}");
        code = ExitCode::from(3);
    }
    for w in &report.warnings {
        eprintln!("tickgate-loadtest: WARNING: {w}");
    }
    if !report.passed() {
        for f in report.failures() {
            eprintln!("tickgate-loadtest: FAIL: {f}");
        }
    }
    code
}
