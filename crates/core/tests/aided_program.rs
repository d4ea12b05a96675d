//! Program-aided sleep time: the engine computes, repairs, drops, and merges.

use sleeptime_core::{
    learn, AidedConfig, AidedProgram, Combine, Context, LearnConfig, NoProgress, SleepBudget,
    SleepProgram,
};
use sleeptime_model::scripted::{Reply, ScriptedBackend};

const KENJI: &str = "Kenji picks 82 coconuts on Friday and 3 times as many on Saturday.";

const ELENA: &str = "Elena has 67 window ledges with 11 potted plants on each. She buys 37 new plants and 180 discounted plants. She gives away 5 plants from each ledge.";

#[tokio::test]
async fn the_engine_computes_every_value_and_repairs_failures() {
    let first = "```python\n# given\nledges = 67  # window ledges\nper_ledge = 11  # plants per ledge\nnew = 37\ndiscounted = 180\ngiven_away_per_ledge = 5\n# derived\non_ledges = per_ledge * ledges = 777  # plants on ledges\ntotal = on_ledges + new + discounted  # all plants\nleft = total - given_away  # plants left\n# Q: How many plants does Elena have left? -> left\n```";
    let repair = "given_away = given_away_per_ledge * ledges  # plants given away";
    let model = ScriptedBackend::new().on_seq(
        "Situation:",
        vec![Reply::Text(first.into()), Reply::Text(repair.into())],
    );
    let draft = AidedProgram::default()
        .run(
            &Context::new(ELENA).expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("run");
    let doc = draft.document.expect("structured");
    let value = |name: &str| {
        doc.quantities
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.value.clone())
    };
    assert_eq!(
        value("on_ledges").as_deref(),
        Some("737"),
        "the model's 777 is never used"
    );
    assert_eq!(value("left").as_deref(), Some("619"));
    assert_eq!(doc.questions.len(), 1);
    assert_eq!(doc.questions[0].answer, "619");
    assert!(draft.stats.finished);
    assert_eq!(draft.stats.steps, 2);
    // The repair request named the failing line and its error.
    let calls = model.calls();
    let repair_prompt = &calls[1].messages.last().expect("msg").content;
    assert!(repair_prompt.contains("given_away"), "{repair_prompt}");
    assert!(
        draft.text.contains("left = total - given_away = 619"),
        "{}",
        draft.text
    );
    assert!(draft.text.contains("(plants left)"));
}

#[tokio::test]
async fn lines_that_still_fail_are_dropped_not_guessed() {
    let model = ScriptedBackend::new().on("Situation:", "a = 2\nb = a / 0  # broken\nc = a * 3");
    let draft = AidedProgram::default()
        .run(
            &Context::new("a is 2").expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("run");
    let doc = draft.document.expect("doc");
    let names: Vec<_> = doc.quantities.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, vec!["a", "c"]);
    assert_eq!(
        model.calls().len(),
        3,
        "initial write plus two repair rounds"
    );
    assert!(!draft.stats.finished);
    assert!(doc.notes[0].contains("dropped"));
}

#[tokio::test]
async fn drafts_merge_by_majority() {
    let model = ScriptedBackend::new().on_seq(
        "Situation:",
        vec![
            Reply::Text("x = 3\ny = x * 4  # twelve".into()),
            Reply::Text("x = 3\ny = x * 5  # twelve?".into()),
            Reply::Text("x = 3\ny = x + 9  # twelve\nz = y * 2".into()),
        ],
    );
    let config = LearnConfig {
        k: 3,
        combine: Combine::Merge,
        budget: SleepBudget::default(),
        ..LearnConfig::default()
    };
    let learned = learn(
        &AidedProgram::default(),
        &model,
        &Context::new("x is 3").expect("ctx"),
        &config,
        &NoProgress,
    )
    .await
    .expect("learn");
    let doc = learned.document.expect("merged");
    let y: Vec<_> = doc.quantities.iter().filter(|q| q.name == "y").collect();
    assert_eq!(y.len(), 1, "each quantity once");
    assert_eq!(y[0].value, "12", "two of three drafts computed 12");
    assert!(doc.quantities.iter().any(|q| q.name == "z"));
    assert!(
        !learned.text.contains("Draft 1"),
        "merged, not concatenated"
    );
}

#[tokio::test]
async fn retrieval_ranks_the_relevant_quantities_first() {
    let model = ScriptedBackend::new().on(
        "Situation:",
        "muffins_per_weekday = 6 * 12  # muffins baked on a weekday\nweekly_revenue = 504 * 3  # revenue for one week in dollars\nfuel_cost = 8 * 4  # fuel cost",
    );
    let draft = AidedProgram::default()
        .run(
            &Context::new("a bakery").expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("run");
    let doc = draft.document.expect("doc");
    let ranked = doc.rank("What is the revenue for one week?");
    assert_eq!(doc.quantities[ranked[0].0].name, "weekly_revenue");
    assert!(ranked[0].1 > ranked[2].1);
    let part = doc.render_parts(&[ranked[0].0], true);
    assert!(part.contains("weekly_revenue") && !part.contains("fuel_cost"));
}

#[tokio::test]
async fn routing_falls_back_when_nothing_matches() {
    use sleeptime_core::{route, Route, RouteConfig};
    let model = ScriptedBackend::new().on(
        "Situation:",
        "trays = 6  # trays baked each weekday\nmuffins_per_tray = 12\nweekday_muffins = trays * muffins_per_tray  # muffins baked on a weekday",
    );
    let draft = AidedProgram::default()
        .run(
            &Context::new("She bakes 6 trays of 12.").expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("run");
    let doc = draft.document.expect("doc");
    let fast = route(
        &doc,
        "How many muffins are baked on a weekday?",
        &RouteConfig::default(),
    );
    assert!(fast.is_fast());
    let Route::Fast { text, .. } = fast else {
        unreachable!()
    };
    assert!(text.contains("weekday_muffins") && text.contains("= 72"));
    let slow = route(
        &doc,
        "What colour is the shop door?",
        &RouteConfig::default(),
    );
    assert_eq!(slow, Route::Fallback { confidence: 0.0 });
}

#[tokio::test]
async fn program_aided_answers_are_computed_by_the_engine() {
    use sleeptime_core::solve_with_program;
    let model = ScriptedBackend::new().on(
        "Question:",
        "trays = 6\nper_tray = 12\nanswer = trays * per_tray = 70",
    );
    let a = solve_with_program(&model, "6 trays of 12", None, "How many?", 100)
        .await
        .expect("solve");
    assert_eq!(a.number, Some(72.0));
    assert!(a.error.is_none());
    // Reusing a learned quantity by name.
    let model = ScriptedBackend::new().on("Question:", "answer = weekday_muffins * 5");
    let learned = "Quantities (every value computed exactly by a calculator; trust them):\n- weekday_muffins = trays * per_tray = 72  (muffins a weekday)";
    let a = solve_with_program(&model, "ctx", Some(learned), "How many in 5 days?", 100)
        .await
        .expect("solve");
    assert_eq!(a.number, Some(360.0), "{a:?}");
    let model = ScriptedBackend::new().on("Question:", "The answer is 5");
    let a = solve_with_program(&model, "ctx", None, "q?", 100)
        .await
        .expect("solve");
    assert_eq!(a.number, None);
    assert!(a.error.is_some());
}

/// The lowest-budget answer: one formula over the learned quantities and the question's
/// numbers, evaluated by the engine; the reply's own claimed value is ignored.
#[tokio::test]
async fn a_formula_answer_uses_learned_names_and_the_question_numbers() {
    use sleeptime_core::{answer_with_program, ProgramStyle, FORMULA_SYSTEM};
    let learned = "Quantities (every value computed exactly by a calculator; trust them):\n- total_kg = wheat_kg + hay_kg = 1800  (feed to carry)";
    let model = ScriptedBackend::new().on("Question:", "answer = ceil(total_kg / 200) = 10");
    let a = answer_with_program(
        &model,
        ProgramStyle::Formula,
        "ctx",
        Some(learned),
        "If the truck carries 200 kg, how many trips?",
        48,
    )
    .await
    .expect("formula");
    assert_eq!(a.number, Some(9.0), "{a:?}");
    assert!(!a.hit_cap);
    let request = &model.calls()[0];
    assert!(
        request.messages[0].content.starts_with(FORMULA_SYSTEM),
        "the formula prompt, not the program one"
    );
    assert!(request.messages[0]
        .content
        .contains("total_kg = wheat_kg + hay_kg = 1800"));
    assert_eq!(request.max_tokens, 48);
    // A bare expression is read as the answer's; a direct answer counts as one.
    for (reply, expected) in [
        ("156 / 1560 * 100 = 10%", 10.0),
        ("```\n100 * (13 / 130)\n```", 10.0),
        ("The answer is 105.", 105.0),
    ] {
        let model = ScriptedBackend::new().on("Question:", reply);
        let a = answer_with_program(
            &model,
            ProgramStyle::Formula,
            "ctx",
            None,
            "What percentage?",
            48,
        )
        .await
        .expect("formula");
        assert_eq!(a.number, Some(expected), "{reply:?}: {a:?}");
    }
    // A name the learned context does not define is an error, not a guess.
    let model = ScriptedBackend::new().on("Question:", "answer = trips_needed");
    let a = answer_with_program(
        &model,
        ProgramStyle::Formula,
        "ctx",
        Some(learned),
        "How many trips?",
        48,
    )
    .await
    .expect("formula");
    assert_eq!(a.number, None);
    assert!(
        a.error.is_some_and(|e| e.contains("trips_needed")),
        "the error names what is undefined"
    );
}

/// The solve stage: predicted questions are solved step by step, the engine redoes the
/// solution's arithmetic, and the answer is linked to a quantity of the same value or added.
#[tokio::test]
async fn predicted_questions_are_solved_and_their_arithmetic_redone_by_the_engine() {
    let model = ScriptedBackend::new()
        .on("final question has been cut off", "1. How many coconuts does Kenji pick in total?\n2. How many coconuts does Kenji pick on Saturday?\n3. Unused?")
        .on_seq(
            "Rewrite the worked solution",
            vec![
                // The solution says 82 + 246 = 318; the engine computes 328.
                Reply::Text("friday = 82\nsaturday = 3 * friday\nanswer = friday + saturday  # total".into()),
                // No `answer` line: the printed name is the answer.
                Reply::Text("saturday = 3 * 82  # Saturday\nprint(saturday)".into()),
            ],
        )
        .on("expert reasoning explanation system", "Saturday is 3 * 82 = 246. Total 82 + 246 = 318. The answer is 318.")
        .on("Situation:", "friday = 82  # Friday coconuts\nsaturday = friday * 3  # Saturday coconuts\n# Q: How many on Saturday? -> saturday");
    let program = AidedProgram::new(AidedConfig {
        repair_rounds: 1,
        solve_questions: 2,
        ..AidedConfig::default()
    });
    let draft = program
        .run(
            &Context::new(KENJI).expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("run");
    let doc = draft.document.expect("doc");
    let total = doc
        .quantities
        .iter()
        .find(|q| q.name == "answer_coconuts_kenji_pick_total")
        .expect("a new quantity for the total");
    assert_eq!(
        total.value, "328",
        "the engine's sum, not the solution's 318"
    );
    assert!(total
        .description
        .contains("How many coconuts does Kenji pick in total?"));
    // The Saturday answer equals a quantity the program already computed: linked, not added.
    assert_eq!(doc.quantities.len(), 3, "{:?}", doc.quantities);
    let solved: Vec<_> = doc
        .questions
        .iter()
        .filter(|q| q.solved)
        .map(|q| (q.quantity.as_str(), q.answer.as_str()))
        .collect();
    assert_eq!(
        solved,
        vec![
            ("answer_coconuts_kenji_pick_total", "328"),
            ("saturday", "246")
        ]
    );
    assert_eq!(
        doc.questions.len(),
        3,
        "the program's own question stays, after the solved ones"
    );
    assert!(
        draft
            .text
            .contains("How many coconuts does Kenji pick in total? Answer: 328"),
        "{}",
        draft.text
    );
    // write, predict, then solve + translate for each of the two questions (no repairs needed).
    assert_eq!(draft.stats.steps, 6);
    assert_eq!(program.id().params, "repair_rounds=1,solve_questions=2");
    assert_eq!(
        AidedProgram::default().id().params,
        "repair_rounds=2",
        "no solve stage, same id as before"
    );
}

/// A step whose prompt outgrows the model's context window — a solution too long to
/// translate, a repair conversation grown too long — drops what that step would have added,
/// not the whole draft: the other question is still solved and counted.
#[tokio::test]
async fn steps_that_outgrow_the_context_window_are_dropped_not_the_draft() {
    // 490 words: each reply fits the step's 768-token cap, but not twice in one prompt.
    let rambling = "Let me think again about the coconuts. ".repeat(70);
    let model = ScriptedBackend::new()
        .context_window(600)
        .on("final question has been cut off", "1. How many coconuts does Kenji pick in total?\n2. How many coconuts does Kenji pick on Saturday?")
        .on("Rewrite the worked solution", "saturday = 3 * 82  # Saturday\nanswer = saturday")
        .on_seq(
            "expert reasoning explanation system",
            vec![Reply::Text(rambling.clone()), Reply::Text("Saturday is 3 * 82 = 246. The answer is 246.".into())],
        )
        // The program's first version has a failing line and is long: the repair request,
        // which repeats it, does not fit.
        .on("Situation:", format!("friday = 82  # Friday coconuts\nbroken = friday / 0\n# {rambling}"));
    let program = AidedProgram::new(AidedConfig {
        repair_rounds: 2,
        solve_questions: 2,
        ..AidedConfig::default()
    });
    let draft = program
        .run(
            &Context::new(KENJI).expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("the draft survives");
    let doc = draft.document.expect("doc");
    assert_eq!(
        doc.quantities
            .iter()
            .find(|q| q.name == "friday")
            .map(|q| q.value.as_str()),
        Some("82"),
        "what evaluated is kept"
    );
    assert!(
        !doc.quantities.iter().any(|q| q.name == "broken"),
        "the unrepaired line is dropped"
    );
    let solved: Vec<_> = doc
        .questions
        .iter()
        .filter(|q| q.solved)
        .map(|q| q.answer.as_str())
        .collect();
    assert_eq!(
        solved,
        vec!["246"],
        "the question whose solution fit is solved; the other is dropped"
    );
    assert_eq!(
        draft.stats.dropped_too_long, 2,
        "one repair, one translation"
    );
    // write, (repair refused), predict, solve 1, (translation refused), solve 2, translate 2.
    assert_eq!(draft.stats.steps, 7);
}

/// Self-consistency at sleep time: each predicted question is solved several times (greedy
/// first, then sampled), the engine redoes each solution's arithmetic, and the value most
/// solutions reach is kept — here the greedy solution's slip loses to two that agree.
#[tokio::test]
async fn sampled_solutions_vote_and_the_majority_value_is_kept() {
    let model = ScriptedBackend::new()
        .on(
            "final question has been cut off",
            "How many coconuts does Kenji pick in total?",
        )
        .on_seq(
            "Rewrite the worked solution",
            vec![
                // Greedy: a wrong setup (not an arithmetic slip: the engine cannot catch it).
                Reply::Text("friday = 82\nanswer = friday * 3  # total".into()),
                Reply::Text(
                    "friday = 82\nsaturday = 3 * friday\nanswer = friday + saturday".into(),
                ),
                Reply::Text("answer = 82 * 4  # Friday plus three times Friday".into()),
            ],
        )
        .on(
            "expert reasoning explanation system",
            "Total is 82 * 4 = 328. The answer is 328.",
        )
        .on("Situation:", "friday = 82  # Friday coconuts");
    let config = AidedConfig {
        repair_rounds: 0,
        solve_questions: 1,
        solve_samples: 3,
        solve_temperature: 0.6,
        ..AidedConfig::default()
    };
    let program = AidedProgram::new(config);
    let draft = program
        .run(
            &Context::new(KENJI).expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("run");
    let doc = draft.document.expect("doc");
    let solved: Vec<_> = doc
        .questions
        .iter()
        .filter(|q| q.solved)
        .map(|q| q.answer.as_str())
        .collect();
    assert_eq!(
        solved,
        vec!["328"],
        "two of three solutions reach 328; the greedy 246 loses"
    );
    let total = doc
        .quantities
        .iter()
        .find(|q| q.value == "328")
        .expect("the majority value is recorded");
    assert!(
        total.description.contains("2 of 3 solutions agree"),
        "{}",
        total.description
    );
    assert!(
        !doc.quantities.iter().any(|q| q.value == "246"),
        "the outvoted value is not recorded"
    );
    // write, predict, then solve + translate three times.
    assert_eq!(draft.stats.steps, 8);
    let solves: Vec<_> = model
        .calls()
        .into_iter()
        .filter(|c| {
            c.messages[0]
                .content
                .contains("expert reasoning explanation system")
        })
        .collect();
    assert_eq!(solves.len(), 3);
    assert_eq!(
        (solves[0].temperature, solves[0].seed),
        (0.0, None),
        "the first solution is the greedy one, as with one sample"
    );
    for sampled in &solves[1..] {
        assert!(
            (sampled.temperature - 0.6).abs() < 1e-6 && sampled.seed.is_some(),
            "{sampled:?}"
        );
    }
    assert_ne!(
        solves[1].seed, solves[2].seed,
        "each sampled solution has its own seed"
    );
    assert_eq!(
        program.id().params,
        "repair_rounds=0,solve_questions=1,solve_samples=3,solve_temperature=0.6"
    );
}

const FARMER: &str =
    "A farmer buys six 6-kilogram boxes of oats and nineteen 16-kilogram sacks of hay.";

/// Open questions: sleep time predicts questions that bring a number of their own, solves
/// and translates each, and the engine makes the question's new number a named input, kept
/// only if the answer evaluates and depends on it. At test time the model binds the input (or
/// rebinds a given number) and the engine evaluates the checked steps.
#[tokio::test]
async fn open_questions_are_checked_at_sleep_time_and_bound_at_test_time() {
    use sleeptime_core::{answer_with_document, ProgramStyle, BIND_SYSTEM, OPEN_PREDICT_SYSTEM};
    // The reply continues the "If" the engine started it with.
    let predicted = " the truck carries 100 kilograms at a time, how many trips are needed?\n\
        If the truck carries 50 kilograms at a time, how many trips are needed?\n\
        How many kilograms of oats are there?\n\
        If 2 sacks of hay are eaten a day, how many days does the hay last?";
    let model = ScriptedBackend::new()
        .on(OPEN_PREDICT_SYSTEM, predicted)
        .on_seq(
            "Rewrite the worked solution",
            vec![
                Reply::Text("truck_kg = 100  # what the truck carries\nfeed_kg = 6 * 6 + 19 * 16  # all feed\nanswer = ceil(feed_kg / truck_kg)".into()),
                // The second translation needs a repair before it evaluates.
                Reply::Text("answer = 19 / sacks_a_day  # days".into()),
                Reply::Text("sacks_a_day = 2  # sacks eaten a day".into()),
            ],
        )
        .on("expert reasoning explanation system", "Work it out step by step. The answer is 4.")
        .on("Situation:", "oats_kg = 6 * 6  # oats\nhay_kg = 19 * 16  # hay\ntotal_feed_kg = oats_kg + hay_kg  # all feed");
    let program = AidedProgram::new(AidedConfig {
        repair_rounds: 1,
        open_questions: 3,
        ..AidedConfig::default()
    });
    let draft = program
        .run(
            &Context::new(FARMER).expect("ctx"),
            &model,
            SleepBudget::default(),
            0,
            &NoProgress,
        )
        .await
        .expect("run");
    let doc = draft.document.expect("doc");

    let open: Vec<_> = doc
        .open_questions
        .iter()
        .map(|o| o.question.as_str())
        .collect();
    assert_eq!(
        open,
        vec![
            "If the truck carries {truck_kg} kilograms at a time, how many trips are needed?",
            "If {sacks_a_day} sacks of hay are eaten a day, how many days does the hay last?",
        ],
        "the question of the same form and the one without a number of its own are not solved"
    );
    let predict = model
        .calls()
        .into_iter()
        .find(|c| c.messages[0].content == OPEN_PREDICT_SYSTEM)
        .expect("predict-open");
    assert_eq!(predict.assistant_prefix.as_deref(), Some("If"));
    let trips = &doc.open_questions[0];
    assert_eq!(
        trips
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), i.value.as_str()))
            .collect::<Vec<_>>(),
        vec![("truck_kg", "100")]
    );
    let answer = trips.answer().expect("answer step");
    assert_eq!(
        (answer.name.as_str(), answer.value.as_str()),
        ("answer_truck_carries_kilograms_at", "4"),
        "ceil(340 / 100)"
    );
    assert_eq!(
        doc.open_questions[1].answer().map(|a| a.value.as_str()),
        Some("9.5"),
        "the repaired translation"
    );
    assert_eq!(
        draft.stats.steps,
        1 + 1 + 2 + 3,
        "write, predict-open, solve + translate, solve + translate + repair"
    );
    assert_eq!(program.id().params, "repair_rounds=1,open_questions=3");
    assert!(
        draft
            .text
            .contains("  truck_kg = <number>\n  answer = answer_truck_carries_kilograms_at"),
        "{}",
        draft.text
    );

    // Test time: bind the input; the engine evaluates the checked steps.
    let ask = |reply: &str| ScriptedBackend::new().on("Question:", reply);
    let model = ask("truck_kg = 200\nanswer = answer_truck_carries_kilograms_at");
    let a = answer_with_document(
        &model,
        ProgramStyle::Formula,
        FARMER,
        &doc,
        "If the truck can carry 200 kilograms at a time, how many trips?",
        48,
    )
    .await
    .expect("bind");
    assert_eq!(a.number, Some(2.0), "ceil(340 / 200): {a:?}");
    assert!(model.calls()[0].messages[0]
        .content
        .starts_with(BIND_SYSTEM));
    // Rebinding a given number recomputes what depends on it.
    let model = ask("hay_kg = 20 * 16\nanswer = total_feed_kg");
    let a = answer_with_document(
        &model,
        ProgramStyle::Formula,
        FARMER,
        &doc,
        "With twenty sacks of hay, how much feed?",
        48,
    )
    .await
    .expect("rebind");
    assert_eq!(a.number, Some(356.0), "36 + 320: {a:?}");
    // A binding that breaks the steps is an error, not a guess.
    let model = ask("truck_kg = 0\nanswer = answer_truck_carries_kilograms_at");
    let a = answer_with_document(
        &model,
        ProgramStyle::Formula,
        FARMER,
        &doc,
        "A truck carrying nothing?",
        48,
    )
    .await
    .expect("bind");
    assert_eq!(a.number, None, "{a:?}");
}
