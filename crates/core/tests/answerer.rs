//! The test-time answerer: layouts, verbosity, budgets, budget forcing, prefix reuse.

use sleeptime_core::{
    AnswerConfig, AnswerInput, Answerer, BudgetForcing, EngineErrorKind, Verbosity,
};
use sleeptime_model::scripted::ScriptedBackend;
use sleeptime_model::Role;

const C: &str = "Mia bakes 3 trays of 12 cookies.";
const LEARNED: &str = "cookies = 3 * 12 = 36";
const Q: &str = "How many cookies does Mia bake?";

#[tokio::test]
async fn layouts_put_everything_but_the_question_first() {
    let model = ScriptedBackend::new();
    let answerer = Answerer::new(&model, AnswerConfig::default());
    let both = AnswerInput {
        context: Some(C),
        learned: Some(LEARNED),
        question: Some(Q),
    };
    let messages = answerer.messages(&both).expect("messages");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].role, Role::System);
    assert!(messages[0].content.contains(LEARNED) && messages[0].content.contains(C));
    assert!(messages[0].content.contains("memory block"));
    assert_eq!(messages[1].content, format!("Question: {Q}"));
    assert_eq!(answerer.prefix_messages(&both), messages[..1].to_vec());

    let baseline = answerer
        .messages(&AnswerInput {
            context: Some(C),
            learned: None,
            question: Some(Q),
        })
        .expect("messages");
    assert!(
        !baseline[0].content.contains("memory block"),
        "the baseline prompt does not mention a memory"
    );
    let learned_only = answerer
        .messages(&AnswerInput {
            context: None,
            learned: Some(LEARNED),
            question: Some(Q),
        })
        .expect("m");
    assert!(!learned_only[0].content.contains(C));
    let context_only = answerer
        .messages(&AnswerInput {
            context: Some(C),
            learned: None,
            question: None,
        })
        .expect("m");
    assert!(!context_only[1].content.contains(Q));
}

#[tokio::test]
async fn answers_report_number_usage_and_latency() {
    let model =
        ScriptedBackend::new().on("How many cookies", "3 trays of 12 is 36. The answer is 36.");
    let answerer = Answerer::new(
        &model,
        AnswerConfig {
            max_tokens: 50,
            ..AnswerConfig::default()
        },
    );
    let answer = answerer
        .answer(&AnswerInput {
            context: Some(C),
            learned: Some(LEARNED),
            question: Some(Q),
        })
        .await
        .expect("answer");
    assert_eq!(answer.number, Some(36.0));
    assert_eq!(answer.usage.completion_tokens, 10);
    assert!(answer.usage.prompt_tokens > 10);
    assert_eq!(answer.usage.cached_prompt_tokens, 0);
    assert!(!answer.hit_cap && !answer.forced);
    assert!(answer.latency >= answer.time_to_first_token);
}

#[tokio::test]
async fn a_prepared_prefix_is_served_from_cache() {
    let model = ScriptedBackend::new().on("How many cookies", "The answer is 36.");
    let answerer = Answerer::new(&model, AnswerConfig::default());
    let input = AnswerInput {
        context: Some(C),
        learned: Some(LEARNED),
        question: Some(Q),
    };
    let prefix = answerer.prepare(&input).await.expect("prefix");
    assert!(prefix.evaluated);
    assert!(
        !answerer.prepare(&input).await.expect("again").evaluated,
        "preparing twice reuses the state"
    );
    let answer = answerer.answer(&input).await.expect("answer");
    assert_eq!(answer.usage.cached_prompt_tokens, u64::from(prefix.tokens));
    assert!(answer.usage.evaluated_prompt_tokens() < u64::from(prefix.tokens));
}

#[tokio::test]
async fn budget_forcing_caps_the_reasoning_then_forces_an_answer() {
    let long = "First I count the trays then the cookies per tray and then I multiply them carefully step by step";
    let model = ScriptedBackend::new()
        .on("I must stop reasoning now", "36.")
        .on("How many cookies", long);
    let config = AnswerConfig {
        verbosity: Verbosity::new(4).expect("level"),
        max_tokens: 8,
        budget_forcing: Some(BudgetForcing { answer_tokens: 4 }),
        ..AnswerConfig::default()
    };
    let answer = Answerer::new(&model, config)
        .answer(&AnswerInput {
            context: Some(C),
            learned: None,
            question: Some(Q),
        })
        .await
        .expect("a");
    assert!(answer.hit_cap && answer.forced);
    assert_eq!(answer.number, Some(36.0));
    assert_eq!(
        answer.usage.completion_tokens,
        8 + 1,
        "both calls are counted"
    );
    let calls = model.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1]
        .assistant_prefix
        .as_deref()
        .is_some_and(|p| p.starts_with("First I count") && p.ends_with("The answer is")));
    assert_eq!(calls[1].max_tokens, 4);

    // Without forcing, a cut-off reply is returned as is.
    let model = ScriptedBackend::new().on("How many cookies", long);
    let config = AnswerConfig {
        max_tokens: 8,
        budget_forcing: None,
        ..AnswerConfig::default()
    };
    let answer = Answerer::new(&model, config)
        .answer(&AnswerInput {
            context: Some(C),
            learned: None,
            question: Some(Q),
        })
        .await
        .expect("a");
    assert!(answer.hit_cap && !answer.forced);
    assert_eq!(answer.number, None);
    assert_eq!(model.calls().len(), 1);
}

#[tokio::test]
async fn verbosity_levels_change_the_instructions() {
    let model = ScriptedBackend::new();
    let systems: Vec<String> = (0..=4)
        .map(|level| {
            let config = AnswerConfig {
                verbosity: Verbosity::new(level).expect("level"),
                ..AnswerConfig::default()
            };
            Answerer::new(&model, config).prefix_messages(&AnswerInput {
                context: Some(C),
                learned: Some(LEARNED),
                question: Some(Q),
            })[0]
                .content
                .clone()
        })
        .collect();
    for (i, a) in systems.iter().enumerate() {
        for b in &systems[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert!(systems[0].contains("single sentence"));
    assert!(systems[4].contains("step by step") && systems[4].contains("double-check"));
    assert_eq!(
        Verbosity::new(5).expect_err("5").kind(),
        EngineErrorKind::InvalidConfig
    );
}

#[tokio::test]
async fn empty_question_is_refused() {
    let model = ScriptedBackend::new();
    let err = Answerer::new(&model, AnswerConfig::default())
        .answer(&AnswerInput {
            context: Some(C),
            learned: None,
            question: Some("  "),
        })
        .await
        .expect_err("empty");
    assert_eq!(err.kind(), EngineErrorKind::EmptyQuestion);
    assert!(model.calls().is_empty());
}

#[tokio::test]
async fn prefix_reuse_can_be_turned_off_to_measure_cold_prefill() {
    let model = ScriptedBackend::new().on("How many cookies", "The answer is 36.");
    let input = AnswerInput {
        context: Some(C),
        learned: Some(LEARNED),
        question: Some(Q),
    };
    Answerer::new(&model, AnswerConfig::default())
        .prepare(&input)
        .await
        .expect("prefix");
    let cold = Answerer::new(
        &model,
        AnswerConfig {
            reuse_prefix: false,
            ..AnswerConfig::default()
        },
    );
    let answer = cold.answer(&input).await.expect("answer");
    assert_eq!(answer.usage.cached_prompt_tokens, 0);
    assert!(!model.calls()[0].reuse_prefix);
}
