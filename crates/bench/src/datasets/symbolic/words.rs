//! Word lists that the templates sample from by name (`sample(names)`,
//! `sample(fraction_alnum)`, ...), number words, and parsing of quantity phrases such as
//! "two-fifths", "a quarter", "thrice" or "thirty five".
//!
//! Apple never published its lists; every list here is our own. Fractions and multipliers
//! are (text, value) pairs: the question shows the text, expressions and worked solutions
//! use the value (a `Fraction` for fractions, an `int` for multipliers, a `float` for
//! decimals).

use super::value::{Phrase, Ratio, Value};

const NAMES_MALE: &[&str] = &[
    "Aarav", "Adrian", "Ahmed", "Alan", "Amir", "Anton", "Ben", "Bruno", "Carlos", "Chidi",
    "Connor", "Dario", "David", "Elias", "Emeka", "Felix", "Gustavo", "Hamid", "Hugo", "Isaac",
    "Jonas", "Jorge", "Kenji", "Kofi", "Lars", "Lucas", "Malik", "Marco", "Mateus", "Nikhil",
    "Omar", "Pablo", "Rahul", "Ryan", "Samuel", "Stefan", "Tomas", "Victor", "Yosef", "Zane",
];

const NAMES_FEMALE: &[&str] = &[
    "Abena", "Adaeze", "Alicia", "Amara", "Ana", "Beatrix", "Bianca", "Chloe", "Dalia", "Elif",
    "Emily", "Esther", "Farah", "Freya", "Greta", "Hana", "Ines", "Ingrid", "Jade", "Julia",
    "Keiko", "Laila", "Lena", "Lucia", "Mariam", "Maya", "Nadia", "Naomi", "Olga", "Paula", "Rosa",
    "Sara", "Selin", "Tamar", "Thandi", "Ursula", "Vera", "Wanjiru", "Yasmin", "Zoe",
];

const NAMES_NEUTRAL: &[&str] = &[
    "Alex", "Ari", "Avery", "Casey", "Charlie", "Dana", "Drew", "Eden", "Emery", "Jamie", "Jordan",
    "Kai", "Kendall", "Morgan", "Noor", "Parker", "Quinn", "Reese", "Riley", "Robin", "Rowan",
    "Sage", "Sam", "Skyler", "Taylor",
];

// singular forms that take a plain "s" plural (templates write `{fruit}s`)
const FRUITS: &[&str] = &[
    "apple",
    "apricot",
    "avocado",
    "banana",
    "clementine",
    "coconut",
    "date",
    "dragon fruit",
    "fig",
    "grapefruit",
    "guava",
    "jackfruit",
    "kiwi",
    "lemon",
    "lime",
    "lychee",
    "mandarin",
    "melon",
    "nectarine",
    "orange",
    "papaya",
    "pear",
    "persimmon",
    "pineapple",
    "plum",
    "pomegranate",
    "quince",
    "starfruit",
    "tangerine",
    "watermelon",
];

const COLORS: &[&str] = &[
    "red",
    "blue",
    "green",
    "yellow",
    "purple",
    "orange",
    "pink",
    "white",
    "black",
    "brown",
    "gray",
    "teal",
    "violet",
    "turquoise",
    "maroon",
    "navy",
    "beige",
    "gold",
    "silver",
    "indigo",
];

const SPORTS: &[&str] = &[
    "basketball",
    "soccer",
    "tennis",
    "volleyball",
    "badminton",
    "baseball",
    "cricket",
    "hockey",
    "rugby",
    "table tennis",
    "handball",
    "softball",
    "water polo",
    "lacrosse",
    "squash",
    "golf",
];

const CITIES: &[&str] = &[
    "Lagos",
    "Lima",
    "Toronto",
    "Mumbai",
    "Osaka",
    "Madrid",
    "Cairo",
    "Nairobi",
    "Seoul",
    "Chicago",
    "Sydney",
    "Berlin",
    "Istanbul",
    "Mexico City",
    "Jakarta",
    "Buenos Aires",
    "Manila",
    "Hanoi",
    "Dublin",
    "Vancouver",
    "Casablanca",
    "Lisbon",
    "Santiago",
    "Accra",
];

const WEEKDAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const LENGTH_LG: &[&str] = &["mile", "kilometer"];
const WEIGHTS_MED: &[&str] = &["pound", "kilogram"];
const WEIGHTS_SM: &[&str] = &["ounce", "gram"];

const CURRENCIES_SYM: &[&str] = &["$", "€", "£", "¥", "₹", "₩", "₦", "₱"];

/// (text, numerator, denominator)
const FRACTION_NUMS: &[(&str, i64, i64)] = &[
    ("1/2", 1, 2),
    ("1/4", 1, 4),
    ("1/3", 1, 3),
    ("2/3", 2, 3),
    ("3/4", 3, 4),
    ("1/5", 1, 5),
    ("2/5", 2, 5),
    ("3/5", 3, 5),
    ("4/5", 4, 5),
    ("1/6", 1, 6),
    ("5/6", 5, 6),
    ("1/8", 1, 8),
    ("3/8", 3, 8),
    ("1/10", 1, 10),
    ("3/10", 3, 10),
];

const FRACTION_ALPH: &[(&str, i64, i64)] = &[
    ("half", 1, 2),
    ("one-half", 1, 2),
    ("a third", 1, 3),
    ("one-third", 1, 3),
    ("two-thirds", 2, 3),
    ("a quarter", 1, 4),
    ("one-fourth", 1, 4),
    ("three-quarters", 3, 4),
    ("a fifth", 1, 5),
    ("two-fifths", 2, 5),
    ("three-fifths", 3, 5),
    ("a sixth", 1, 6),
    ("an eighth", 1, 8),
    ("three-eighths", 3, 8),
    ("a tenth", 1, 10),
    ("three-tenths", 3, 10),
];

/// Fractions written as decimals: (text, value).
const FRACTION_DECIMALS: &[(&str, f64)] = &[
    ("0.1", 0.1),
    ("0.2", 0.2),
    ("0.25", 0.25),
    ("0.3", 0.3),
    ("0.4", 0.4),
    ("0.5", 0.5),
    ("0.6", 0.6),
    ("0.7", 0.7),
    ("0.75", 0.75),
    ("0.8", 0.8),
    ("0.9", 0.9),
];

const MULTI_TIMES: &[(&str, i64)] = &[
    ("twice", 2),
    ("two times", 2),
    ("thrice", 3),
    ("three times", 3),
    ("four times", 4),
    ("five times", 5),
    ("six times", 6),
    ("seven times", 7),
    ("eight times", 8),
    ("nine times", 9),
    ("ten times", 10),
];

const MULTIPLE_ICE: &[(&str, i64)] = &[
    ("double", 2),
    ("triple", 3),
    ("quadruple", 4),
    ("quintuple", 5),
];

const MULTIPLE: &[(&str, i64)] = &[("double", 2), ("triple", 3), ("quadruple", 4)];

fn strs(list: &[&str]) -> Value {
    Value::List(list.iter().map(|s| Value::Str((*s).to_string())).collect())
}

fn phrase(text: &str, value: Value) -> Value {
    Value::Phrase(Box::new(Phrase {
        text: text.to_string(),
        value,
    }))
}

fn fracs(list: &[(&str, i64, i64)]) -> Vec<Value> {
    list.iter()
        .filter_map(|(t, n, d)| {
            Ratio::new(i128::from(*n), i128::from(*d))
                .ok()
                .map(|r| phrase(t, Value::Frac(r)))
        })
        .collect()
}

fn mults(list: &[(&str, i64)]) -> Vec<Value> {
    list.iter()
        .map(|(t, n)| phrase(t, Value::Int(*n)))
        .collect()
}

/// Every list name a template may reference.
pub const LIST_NAMES: &[&str] = &[
    "names",
    "names_male",
    "names_female",
    "fruits",
    "colors",
    "sports",
    "cities",
    "weekdays",
    "length_lg",
    "weights_med",
    "weights_sm",
    "currencies_sym",
    "fractions",
    "fraction_nums",
    "fraction_alph",
    "fraction_alnum",
    "fraction_decimals",
    "multi_times",
    "multiple_ice",
    "multiple",
];

/// The named list `name`, or `None` if we do not define it.
pub fn named_list(name: &str) -> Option<Value> {
    let v = match name {
        "names" => {
            let mut all: Vec<Value> = Vec::new();
            for l in [NAMES_MALE, NAMES_FEMALE, NAMES_NEUTRAL] {
                all.extend(l.iter().map(|s| Value::Str((*s).to_string())));
            }
            Value::List(all)
        }
        "names_male" => strs(NAMES_MALE),
        "names_female" => strs(NAMES_FEMALE),
        "fruits" => strs(FRUITS),
        "colors" => strs(COLORS),
        "sports" => strs(SPORTS),
        "cities" => strs(CITIES),
        "weekdays" => strs(WEEKDAYS),
        "length_lg" => strs(LENGTH_LG),
        "weights_med" => strs(WEIGHTS_MED),
        "weights_sm" => strs(WEIGHTS_SM),
        "currencies_sym" => strs(CURRENCIES_SYM),
        "fraction_nums" => Value::List(fracs(FRACTION_NUMS)),
        "fraction_alph" => Value::List(fracs(FRACTION_ALPH)),
        "fraction_alnum" | "fractions" => {
            let mut v = fracs(FRACTION_NUMS);
            v.extend(fracs(FRACTION_ALPH));
            Value::List(v)
        }
        "fraction_decimals" => Value::List(
            FRACTION_DECIMALS
                .iter()
                .map(|(t, x)| phrase(t, Value::Float(*x)))
                .collect(),
        ),
        "multi_times" => Value::List(mults(MULTI_TIMES)),
        "multiple_ice" => Value::List(mults(MULTIPLE_ICE)),
        "multiple" => Value::List(mults(MULTIPLE)),
        _ => return None,
    };
    Some(v)
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// English words for `0 <= n < 1_000_000` ("thirty-five", "one hundred twenty"); other
/// numbers are written with digits.
pub fn number_words(n: i64) -> String {
    if !(0..1_000_000).contains(&n) {
        return n.to_string();
    }
    let idx = |x: i64| usize::try_from(x).unwrap_or(0);
    if n < 20 {
        return ONES[idx(n)].to_string();
    }
    if n < 100 {
        let t = TENS[idx(n / 10)];
        return if n % 10 == 0 {
            t.to_string()
        } else {
            format!("{t}-{}", ONES[idx(n % 10)])
        };
    }
    if n < 1000 {
        let h = format!("{} hundred", ONES[idx(n / 100)]);
        return if n % 100 == 0 {
            h
        } else {
            format!("{h} {}", number_words(n % 100))
        };
    }
    let th = format!("{} thousand", number_words(n / 1000));
    if n % 1000 == 0 {
        th
    } else {
        format!("{th} {}", number_words(n % 1000))
    }
}

fn word_value(w: &str) -> Option<i64> {
    if let Some(i) = ONES.iter().position(|o| *o == w) {
        return i64::try_from(i).ok();
    }
    if let Some(i) = TENS.iter().position(|t| !t.is_empty() && *t == w) {
        return i64::try_from(i * 10).ok();
    }
    match w {
        "a" | "an" => Some(1),
        _ => None,
    }
}

/// Parses number words ("thirty five", "thirty-five", "one hundred and two", "a").
pub fn parse_number_words(text: &str) -> Option<i64> {
    let lower = text.trim().to_lowercase().replace('-', " ");
    let mut total: i64 = 0;
    let mut current: i64 = 0;
    let mut any = false;
    for w in lower.split_whitespace() {
        if w == "and" {
            continue;
        }
        any = true;
        match w {
            "hundred" => current = current.max(1) * 100,
            "thousand" => {
                total += current.max(1) * 1000;
                current = 0;
            }
            _ => current += word_value(w)?,
        }
    }
    any.then_some(total + current)
}

fn denominator_word(w: &str) -> Option<i64> {
    Some(match w {
        "half" | "halves" => 2,
        "third" | "thirds" => 3,
        "quarter" | "quarters" | "fourth" | "fourths" => 4,
        "fifth" | "fifths" => 5,
        "sixth" | "sixths" => 6,
        "seventh" | "sevenths" => 7,
        "eighth" | "eighths" => 8,
        "ninth" | "ninths" => 9,
        "tenth" | "tenths" => 10,
        "eleventh" | "elevenths" => 11,
        "twelfth" | "twelfths" => 12,
        _ => return None,
    })
}

/// Parses a quantity phrase as it appears in a question: digits ("12", "1,200", "2.5"),
/// fractions ("3/4", "two-fifths", "a quarter", "half"), multipliers ("twice", "thrice",
/// "double", "four times") and number words ("thirty five"). Returns `None` for anything
/// else.
pub fn parse_quantity(text: &str) -> Option<Value> {
    let t = text.trim();
    let plain = t.replace(',', "");
    if let Ok(i) = plain.parse::<i64>() {
        return Some(Value::Int(i));
    }
    if plain.contains('.') {
        if let Ok(f) = plain.parse::<f64>() {
            return Some(Value::Float(f));
        }
    }
    if let Some((a, b)) = plain.split_once('/') {
        if let (Ok(a), Ok(b)) = (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
            return Ratio::new(i128::from(a), i128::from(b))
                .ok()
                .map(Value::Frac);
        }
    }
    let lower = t.to_lowercase();
    match lower.as_str() {
        "twice" | "double" => return Some(Value::Int(2)),
        "thrice" | "triple" => return Some(Value::Int(3)),
        "quadruple" => return Some(Value::Int(4)),
        "quintuple" => return Some(Value::Int(5)),
        "half" => return Ratio::new(1, 2).ok().map(Value::Frac),
        _ => {}
    }
    if let Some(rest) = lower.strip_suffix(" times") {
        return parse_number_words(rest).map(Value::Int);
    }
    let words: Vec<&str> = lower
        .split(|c: char| c == '-' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if let Some((last, head)) = words.split_last() {
        if let Some(den) = denominator_word(last) {
            let num = if head.is_empty() {
                Some(1)
            } else {
                parse_number_words(&head.join(" "))
            };
            return num
                .and_then(|n| Ratio::new(i128::from(n), i128::from(den)).ok())
                .map(Value::Frac);
        }
    }
    parse_number_words(&lower).map(Value::Int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_words_roundtrip() {
        for n in [0, 7, 13, 20, 35, 99, 100, 101, 342, 1000, 2024, 99_999] {
            assert_eq!(parse_number_words(&number_words(n)), Some(n), "{n}");
        }
        assert_eq!(number_words(35), "thirty-five");
        assert_eq!(parse_number_words("thirty five"), Some(35));
        assert_eq!(parse_number_words("banana"), None);
    }

    #[test]
    fn quantity_phrases() {
        let frac = |n, d| Value::Frac(Ratio::new(n, d).expect("valid"));
        assert_eq!(parse_quantity("two-fifths"), Some(frac(2, 5)));
        assert_eq!(parse_quantity("A quarter"), Some(frac(1, 4)));
        assert_eq!(parse_quantity("half"), Some(frac(1, 2)));
        assert_eq!(parse_quantity("two-fourths"), Some(frac(1, 2)));
        assert_eq!(parse_quantity("3/4"), Some(frac(3, 4)));
        assert_eq!(parse_quantity("thrice"), Some(Value::Int(3)));
        assert_eq!(parse_quantity("seven times"), Some(Value::Int(7)));
        assert_eq!(parse_quantity("1,200"), Some(Value::Int(1200)));
        assert_eq!(parse_quantity("0.25"), Some(Value::Float(0.25)));
        assert_eq!(parse_quantity("thirty five"), Some(Value::Int(35)));
        assert_eq!(parse_quantity("Monday"), None);
    }

    #[test]
    fn lists_exist_and_are_big_enough() {
        for name in LIST_NAMES {
            let v = named_list(name).unwrap_or_else(|| panic!("{name}"));
            let n = v.seq_len().expect("a list");
            assert!(n >= 2, "{name}");
        }
        assert!(
            named_list("names")
                .and_then(|v| v.seq_len().ok())
                .unwrap_or(0)
                >= 100
        );
        assert!(named_list("nope").is_none());
    }
}
