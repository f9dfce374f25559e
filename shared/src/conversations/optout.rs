//! Opt-out and opt-in keywords. A message is a keyword only when it is the keyword and nothing
//! else (punctuation, case and surrounding space aside), so "don't stop the music" does not
//! unsubscribe anyone while "STOP", "stop!" and " Baja " do.

/// What an inbound text asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
}

const OPT_OUT: &[&str] = &[
    "stop",
    "stopall",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "optout",
    "opt out",
    "opt-out",
    "baja",
    "darme de baja",
    "alto",
    "parar",
    "cancelar",
    "berhenti",
];
const OPT_IN: &[&str] = &[
    "start",
    "unstop",
    "subscribe",
    "optin",
    "opt in",
    "opt-in",
    "alta",
    "mulai",
];

/// Reads a keyword from a message text.
pub fn keyword(text: &str) -> Option<Keyword> {
    let normalised: String = text
        .trim()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if OPT_OUT.contains(&normalised.as_str()) {
        Some(Keyword::OptOut)
    } else if OPT_IN.contains(&normalised.as_str()) {
        Some(Keyword::OptIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_its_equivalents_opt_out_in_any_case_and_with_punctuation() {
        for text in [
            "STOP",
            "stop",
            "Stop!",
            "  baja ",
            "UNSUBSCRIBE.",
            "Darme de baja",
        ] {
            assert_eq!(keyword(text), Some(Keyword::OptOut), "{text:?}");
        }
    }

    #[test]
    fn start_opts_back_in() {
        for text in ["START", "start", "Start."] {
            assert_eq!(keyword(text), Some(Keyword::OptIn), "{text:?}");
        }
    }

    #[test]
    fn keywords_inside_other_words_or_sentences_do_nothing() {
        for text in [
            "stopped",
            "don't stop the music",
            "STOPS",
            "start the order please",
            "bajar",
            "",
        ] {
            assert_eq!(keyword(text), None, "{text:?}");
        }
    }
}
