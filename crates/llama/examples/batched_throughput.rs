//! How much generation throughput batching sequences buys on this machine: decodes B
//! sequences together (one `llama_decode` per step for all of them) for B = 1, 2, 4, 8 and
//! prints prompt and generation tokens per second. The embedded backend serves one sequence
//! at a time; this measures what a multi-sequence worker could gain before anyone builds it.
//!
//! ```text
//! cargo run --release -p sleeptime-llama --example batched_throughput -- MODEL.gguf [THREADS]
//! ```

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// Tokens generated per sequence.
const GENERATED: usize = 64;

/// A prompt of GSM-like length (about 100 tokens), the same for every sequence: each
/// sequence prefills it on its own, as separate requests would.
const PROMPT: &str = "A farmer keeps chickens, ducks and goats. Every morning he collects eggs \
from the chickens and the ducks, feeds the goats twice a day, and sells what he does not need \
at the market on Saturdays, where eggs fetch a fixed price per dozen and goat milk a price per \
litre. Write down, step by step, every quantity a buyer might ask about, with its value.";

fn argmax(logits: &[f32]) -> LlamaToken {
    let best = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    LlamaToken(i32::try_from(best).unwrap_or(0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: batched_throughput MODEL.gguf [THREADS]")?;
    let threads: i32 = match args.next() {
        Some(t) => t.parse()?,
        None => i32::try_from(std::thread::available_parallelism()?.get())?,
    };
    let backend = LlamaBackend::init()?;
    let model = LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default())?;
    let prompt = model.vocab().tokenize(PROMPT.as_bytes(), true, false);
    println!(
        "model {path}, {threads} threads, prompt {} tokens, {GENERATED} generated per sequence",
        prompt.len()
    );
    println!("| sequences | prompt tok/s | generation tok/s (all sequences) | vs 1 sequence |");
    println!("|---|---|---|---|");
    let mut single = None;
    for sequences in [1usize, 2, 4, 8] {
        let n_seq = u32::try_from(sequences)?;
        let per_seq = prompt.len() + GENERATED + 8;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(
                u32::try_from(per_seq * sequences)?.max(512),
            ))
            .with_n_batch(1024)
            .with_n_ubatch(512)
            .with_n_seq_max(n_seq)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut ctx = model.new_context(&backend, params)?;
        let mut batch = LlamaBatch::new(1024, i32::try_from(sequences)?);

        // Prefill each sequence separately (separate requests), timing all of it.
        let started = Instant::now();
        let mut last = vec![0i32; sequences];
        for (seq, slot) in last.iter_mut().enumerate() {
            batch.clear();
            for (pos, token) in prompt.iter().enumerate() {
                let is_last = pos + 1 == prompt.len();
                batch.add(*token, i32::try_from(pos)?, &[i32::try_from(seq)?], is_last)?;
            }
            ctx.decode(&mut batch)?;
            *slot = batch.n_tokens() - 1;
        }
        let prefill_s = started.elapsed().as_secs_f64();

        // Generate greedily for every sequence in one batch per step.
        let mut next: Vec<LlamaToken> = last
            .iter()
            .map(|&i| argmax(ctx.get_logits_ith(i)))
            .collect();
        let started = Instant::now();
        for step in 0..GENERATED {
            batch.clear();
            for (seq, token) in next.iter().enumerate() {
                let pos = i32::try_from(prompt.len() + step)?;
                batch.add(*token, pos, &[i32::try_from(seq)?], true)?;
            }
            ctx.decode(&mut batch)?;
            next = (0..sequences)
                .map(|i| argmax(ctx.get_logits_ith(i32::try_from(i).unwrap_or(0))))
                .collect();
        }
        let generate_s = started.elapsed().as_secs_f64();
        let prompt_rate = (prompt.len() * sequences) as f64 / prefill_s;
        let rate = (GENERATED * sequences) as f64 / generate_s;
        let base = *single.get_or_insert(rate);
        println!(
            "| {sequences} | {prompt_rate:.1} | {rate:.1} | {:.2}x |",
            rate / base
        );
    }
    Ok(())
}
