//! Instantiates one template and prints the result or every rejection reason.
//!
//! `cargo run -p sleeptime-bench --example template_debug -- p1 74 [seed]`

use sleeptime_bench::datasets::data_dir;
use sleeptime_bench::datasets::symbolic::{Generator, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let split = match args.get(1).map(String::as_str) {
        Some("symbolic") => Split::Symbolic,
        Some("p1") => Split::P1,
        _ => Split::P2,
    };
    let id = args.get(2).cloned().unwrap_or_else(|| "0".into());
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let gen = Generator::load(data_dir().join("gsm_symbolic/templates"), split)?;
    match gen.instantiate(&id, seed, 0) {
        Ok(inst) => {
            println!(
                "{}\n---\n{}\n---\nanswer {} (attempts {}, clean {})",
                inst.question, inst.solution, inst.answer_text, inst.attempts, inst.clean
            );
            for (k, v) in &inst.vars {
                println!("  {k} = {} [{}]", v.display_text(), v.py_str());
            }
        }
        Err(e) => {
            println!("failed after {} attempts", e.attempts);
            for (r, n) in &e.reasons {
                println!("  {n:>6}  {r}");
            }
        }
    }
    Ok(())
}
