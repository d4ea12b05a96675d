//! Built-in demo contexts: GSM-style situations written for this project, each with several
//! questions a user might ask later and their answers (worked out by hand below each one).

/// One situation and the questions asked about it.
#[derive(Debug, Clone, Copy)]
pub struct DemoContext {
    pub name: &'static str,
    pub text: &'static str,
    pub queries: &'static [(&'static str, f64)],
}

pub const DEMO_CONTEXTS: &[DemoContext] = &[
    DemoContext {
        name: "bakery",
        text: "Lena runs a small bakery that is open Monday through Saturday. Every weekday she bakes 6 trays of muffins with 12 muffins on each tray. \
On Saturdays she bakes twice as many muffins as on a weekday. She sells each muffin for $3, and each muffin costs her $1.25 to make. \
She sells every muffin she bakes.",
        queries: &[
            // 6 * 12 = 72
            ("How many muffins does Lena bake on a weekday?", 72.0),
            // 72 * (3 - 1.25) = 126
            ("How much profit in dollars does Lena make on one weekday?", 126.0),
            // 5 * 72 + 2 * 72 = 504
            ("How many muffins does Lena bake in a whole week?", 504.0),
            // 504 * 3 = 1512
            ("What is Lena's total revenue in dollars for one week?", 1512.0),
        ],
    },
    DemoContext {
        name: "road-trip",
        text: "Omar drives from his town to the coast, a distance of 240 miles. His car uses one gallon of fuel for every 30 miles, \
and fuel costs $4 per gallon. He drives at an average speed of 60 miles per hour, and on the way he stops once for a 30-minute lunch break.",
        queries: &[
            // 240 / 30 = 8
            ("How many gallons of fuel does Omar use to drive to the coast?", 8.0),
            // 2 * 8 * 4 = 64
            ("How much does the fuel cost in dollars for the round trip to the coast and back?", 64.0),
            // 240 / 60 + 0.5 = 4.5
            ("How many hours does the trip to the coast take, including the lunch break?", 4.5),
            // 240/60 - 240/80 = 1
            ("If Omar drove at 80 miles per hour instead, how many hours of driving would he save on the way to the coast?", 1.0),
        ],
    },
    DemoContext {
        name: "library",
        text: "A school library has 1,200 books. 40% of the books are fiction and the rest are non-fiction. \
This year the library buys 150 new fiction books and removes 60 old non-fiction books. \
The school has 320 students, and each student may borrow at most 3 books at a time.",
        queries: &[
            // 0.4 * 1200 = 480
            ("How many fiction books did the library have before this year's changes?", 480.0),
            // 1200 + 150 - 60 = 1290
            ("How many books does the library have after this year's changes?", 1290.0),
            // 720 - 60 = 660
            ("How many non-fiction books does the library have after the changes?", 660.0),
            // 1290 - 320 * 3 = 330
            ("After the changes, if every student borrows the most books allowed, how many books stay on the shelves?", 330.0),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_context_has_several_distinct_questions() {
        for ctx in DEMO_CONTEXTS {
            assert!(ctx.queries.len() >= 3, "{}", ctx.name);
            let mut qs: Vec<_> = ctx.queries.iter().map(|q| q.0).collect();
            qs.dedup();
            assert_eq!(qs.len(), ctx.queries.len());
            assert!(
                !ctx.text.contains("?"),
                "questions are not part of the context"
            );
        }
    }
}
