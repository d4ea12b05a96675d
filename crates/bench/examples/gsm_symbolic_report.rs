//! Prints generator coverage for the three template sets and the agreement of our
//! evaluator with Apple's released P2 rows.
//!
//! `cargo run -p sleeptime-bench --example gsm_symbolic_report [-- --verbose] [--stress N]`
//!
//! `--stress N` also instantiates every template N times and reports attempts, instances
//! kept despite float noise, and templates whose `#answer` contradicts their solution.

use sleeptime_bench::datasets::data_dir;
use sleeptime_bench::datasets::symbolic::{check_release, CheckOutcome, Generator, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let verbose = args.iter().any(|a| a == "--verbose");
    let stress: u64 = args
        .iter()
        .position(|a| a == "--stress")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let templates = data_dir().join("gsm_symbolic/templates");
    let mut total_ok = 0;
    let mut total = 0;
    for split in Split::ALL {
        let gen = Generator::load(&templates, split)?;
        let cov = gen.coverage(0);
        total_ok += cov.ok.len();
        total += cov.total;
        println!(
            "{split}: {}/{} templates instantiate",
            cov.ok.len(),
            cov.total
        );
        for f in &cov.failed {
            println!("  FAILED {f}");
        }
    }
    println!("all: {total_ok}/{total}");
    if stress > 0 {
        let start = std::time::Instant::now();
        for split in Split::ALL {
            let gen = Generator::load(&templates, split)?;
            let (mut n, mut noisy, mut failed, mut max_attempts, mut sum_attempts) =
                (0, 0, 0, 0, 0);
            let mut disagree = std::collections::BTreeSet::new();
            let mut slow = Vec::new();
            for t in gen.templates() {
                let mut t_attempts = 0;
                for round in 0..stress {
                    match gen.instantiate(&t.id, 7, round) {
                        Ok(inst) => {
                            n += 1;
                            noisy += usize::from(!inst.clean);
                            if !inst.agrees {
                                disagree.insert(t.id.clone());
                            }
                            max_attempts = max_attempts.max(inst.attempts);
                            sum_attempts += inst.attempts;
                            t_attempts += inst.attempts;
                        }
                        Err(e) => {
                            failed += 1;
                            println!("  {split}/{} round {round}: {e}", t.id);
                        }
                    }
                }
                slow.push((t_attempts / stress as usize, t.id.clone()));
            }
            slow.sort();
            slow.reverse();
            println!(
                "{split}: {n} instances, {failed} failures, {noisy} with float noise, mean attempts {:.0}, max {max_attempts}; #answer != solution in templates {disagree:?}; slowest (mean attempts): {:?}",
                sum_attempts as f64 / n.max(1) as f64,
                &slow[..3.min(slow.len())]
            );
        }
        println!("stress took {:.1}s", start.elapsed().as_secs_f64());
    }

    let report = check_release(
        &templates,
        data_dir().join("gsm_symbolic/GSM_p2.jsonl"),
        Split::P2,
        None,
    )?;
    let per = report.per_template();
    println!(
        "P2 release: {} rows, {} agree on #answer; {} templates fully agree on #answer, {} on #answer or the worked solution",
        report.rows.len(),
        report.agree_count(),
        report.agreeing_templates().len(),
        report.agreeing_templates_any().len()
    );
    let text = report
        .rows
        .iter()
        .filter(|r| r.solution_text_matches)
        .count();
    println!(
        "worked solution text identical to the release: {text}/{}",
        report.rows.len()
    );
    for (id, s) in per.values() {
        if s.agree != s.rows || verbose {
            println!("  template {id}: {s:?}");
            for r in report
                .rows
                .iter()
                .filter(|r| &r.template == id && r.outcome != CheckOutcome::Agree)
                .take(2)
            {
                println!("    instance {}: {:?}", r.instance, r.outcome);
            }
        }
    }
    Ok(())
}
