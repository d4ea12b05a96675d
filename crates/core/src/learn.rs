use std::time::{SystemTime, UNIX_EPOCH};

use sleeptime_model::ModelBackend;

use crate::{
    Context, EngineError, EngineErrorKind, LearnedContext, SleepBudget, SleepProgram, SleepProgress,
};

/// How k drafts become one learned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Combine {
    /// Concatenate the drafts in order, as the paper does.
    #[default]
    Concatenate,
    /// Merge structured drafts: each quantity once, conflicts settled by majority. Drafts
    /// without a structured form are concatenated.
    Merge,
}

/// Settings for [`learn`].
#[derive(Debug, Clone, PartialEq)]
pub struct LearnConfig {
    /// Parallel drafts (the paper: 1, 2, 5, 10).
    pub k: usize,
    /// Budget of each draft; with k = 1 its temperature is used as given.
    pub budget: SleepBudget,
    /// Temperature for k > 1, so the drafts differ.
    pub sampled_temperature: f32,
    /// Draft i samples with seed `base_seed + i`.
    pub base_seed: u64,
    pub combine: Combine,
    /// Version number to give the result.
    pub version: u64,
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            k: 1,
            budget: SleepBudget::default(),
            sampled_temperature: 0.7,
            base_seed: 0,
            combine: Combine::Concatenate,
            version: 1,
        }
    }
}

/// Room left in the window for the sleep prompt's instructions and the model's writing.
const SLEEP_OVERHEAD_TOKENS: u32 = 400;

/// Run `config.k` drafts of `program` on `context` and combine them into a learned context.
pub async fn learn(
    program: &dyn SleepProgram,
    model: &dyn ModelBackend,
    context: &Context,
    config: &LearnConfig,
    progress: &dyn SleepProgress,
) -> Result<LearnedContext, EngineError> {
    if config.k == 0 {
        return Err(EngineError::new(
            EngineErrorKind::InvalidConfig,
            "k must be at least 1",
        ));
    }
    let info = model.info();
    let context_tokens = model.count_tokens(context.text()).await?;
    let needed = context_tokens + SLEEP_OVERHEAD_TOKENS + config.budget.max_tokens_per_step;
    if needed > info.context_window {
        return Err(EngineError::new(
            EngineErrorKind::ContextTooLong,
            format!(
                "the context is {context_tokens} tokens; with {} tokens to write it needs a {needed}-token window, but {} has {}",
                config.budget.max_tokens_per_step, info.name, info.context_window
            ),
        ));
    }
    let runs = (0..config.k).map(|i| {
        let mut budget = config.budget;
        if config.k > 1 {
            budget.temperature = config.sampled_temperature;
            budget.seed = Some(config.base_seed + i as u64);
        }
        program.run(context, model, budget, i, progress)
    });
    let drafts = futures::future::try_join_all(runs).await?;
    let docs: Vec<&crate::LearnedDocument> =
        drafts.iter().filter_map(|d| d.document.as_ref()).collect();
    let document = match docs.len() {
        0 => None,
        1 => Some(docs[0].clone()),
        _ => Some(crate::merge_documents(&docs)),
    };
    let text = match (config.combine, &document) {
        (_, _) if drafts.len() == 1 => drafts[0].text.clone(),
        (Combine::Merge, Some(doc)) if docs.len() == drafts.len() => doc.render(),
        _ => drafts
            .iter()
            .enumerate()
            .map(|(i, d)| format!("Draft {}:\n{}", i + 1, d.text))
            .collect::<Vec<_>>()
            .join("\n\n"),
    };
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(LearnedContext {
        version: config.version,
        context_hash: context.hash().clone(),
        program: program.id(),
        model_fingerprint: info.fingerprint,
        model_name: info.name,
        drafts,
        text,
        document,
        created_at,
    })
}
