//! Cutting a text too long for one WhatsApp message into several that each fit, at the most
//! natural boundary available, so an AI answer longer than [`MAX_TEXT_BODY`] reaches the customer
//! in order instead of being refused.
//!
//! Lengths are counted in characters (Unicode scalar values), as WhatsApp counts them and as
//! [`Outgoing::validate`] checks them, never in bytes.
//!
//! [`MAX_TEXT_BODY`]: super::MAX_TEXT_BODY
//! [`Outgoing::validate`]: super::Outgoing::validate

/// Splits `text` into parts of at most `limit` characters, in order.
///
/// Each part ends at the last boundary that keeps it within `limit`, preferring, in this order:
/// a paragraph break (a blank line), a line break, a sentence end (`.`, `!` or `?` followed by
/// whitespace, or an ideographic `。`, `！`, `？`, which need no space after them), any
/// whitespace; only a single run of more than `limit` characters without any of these is cut
/// hard, at a character boundary.
///
/// Every part is non-empty and trimmed; the whitespace at a cut is dropped, nothing else is: the
/// parts hold all the non-whitespace characters of `text`, in order. A blank `text` gives no
/// parts. A `limit` of 0 is treated as 1, since no part could be empty.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // The byte offset of character number `limit`; `None` when the rest fits whole.
        let Some((window, _)) = rest.char_indices().nth(limit) else {
            parts.push(rest.to_owned());
            break;
        };
        let (head, tail) = rest.split_at(best_cut(rest, window));
        parts.push(head.trim_end().to_owned());
        rest = tail.trim_start();
    }
    parts
}

/// Where the next part of `text` ends: a byte offset in `1..=window`, where `text[..window]` is
/// exactly the `limit` characters that may go in one part. `text` starts with a non-whitespace
/// character, so a cut after it always leaves a non-empty part.
fn best_cut(text: &str, window: usize) -> usize {
    let mut paragraph = None;
    let mut line = None;
    let mut sentence = None;
    let mut space = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        // A cut at `i` keeps `text[..i]`, so whitespace exactly at `window` still fits.
        if i > window {
            break;
        }
        if c == '\n' {
            line = Some(i);
            if starts_blank_line(&text[i + 1..]) {
                paragraph = Some(i);
            }
        }
        if c.is_whitespace() {
            space = Some(i);
        }
        let end = i + c.len_utf8();
        if end <= window && ends_sentence(c, chars.peek().map(|&(_, next)| next)) {
            sentence = Some(end);
        }
    }
    paragraph
        .or(line)
        .or(sentence)
        .or(space)
        .filter(|&cut| cut > 0)
        .unwrap_or(window)
}

/// Whether `after` (what follows a line break) makes that line break the end of a paragraph:
/// only spaces, tabs or a carriage return before the next line break.
fn starts_blank_line(after: &str) -> bool {
    after.chars().find(|&c| c == '\n' || !c.is_whitespace()) == Some('\n')
}

/// Whether `c` ends a sentence given the character after it. A latin full stop needs whitespace
/// after it, so `3.14` and `example.com` stay whole; CJK text puts no space after its own.
fn ends_sentence(c: char, next: Option<char>) -> bool {
    match c {
        '.' | '!' | '?' => next.is_some_and(char::is_whitespace),
        '。' | '！' | '？' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WaId;
    use crate::whatsapp::{MAX_TEXT_BODY, Outgoing};
    use proptest::prelude::*;

    fn non_whitespace(text: &str) -> String {
        text.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn a_text_within_the_limit_is_one_part_without_its_outer_whitespace() {
        assert_eq!(split_text("  Hello there!\n", 20), ["Hello there!"]);
    }

    #[test]
    fn a_blank_text_gives_no_parts() {
        assert!(split_text("", 10).is_empty());
        assert!(split_text(" \n\t ", 10).is_empty());
    }

    #[test]
    fn paragraphs_that_fit_together_stay_together_and_the_cut_is_at_a_blank_line() {
        let text = "First para.\nStill first.\n\nSecond para.\n\nThird para is here.";
        assert_eq!(
            split_text(text, 40),
            [
                "First para.\nStill first.\n\nSecond para.",
                "Third para is here."
            ]
        );
    }

    #[test]
    fn a_blank_line_holding_spaces_or_a_carriage_return_still_ends_a_paragraph() {
        let text = "One line. Two.\nThree\r\n \t\r\nFour and more words";
        assert_eq!(
            split_text(text, 25),
            ["One line. Two.\nThree", "Four and more words"]
        );
    }

    #[test]
    fn without_blank_lines_the_cut_is_at_a_line_break() {
        let text = "- apples. Green ones\n- pears\n- plums, ripe";
        assert_eq!(
            split_text(text, 30),
            ["- apples. Green ones\n- pears", "- plums, ripe"]
        );
    }

    #[test]
    fn a_long_paragraph_is_cut_after_a_sentence() {
        let text = "It works. Really it does! Does it? Yes it does.";
        assert_eq!(
            split_text(text, 30),
            ["It works. Really it does!", "Does it? Yes it does."]
        );
    }

    #[test]
    fn a_full_stop_inside_a_number_or_address_is_not_a_sentence_end() {
        let text = "Pi is 3.14159 see example.com for more";
        assert_eq!(
            split_text(text, 20),
            ["Pi is 3.14159 see", "example.com for more"]
        );
    }

    #[test]
    fn an_ideographic_full_stop_ends_a_sentence_without_a_space() {
        assert_eq!(
            split_text("今日は晴れです。明日は雨です。", 10),
            ["今日は晴れです。", "明日は雨です。"]
        );
    }

    #[test]
    fn a_sentence_longer_than_the_limit_is_cut_between_words() {
        assert_eq!(
            split_text("the quick brown fox jumps over the lazy dog", 15),
            ["the quick brown", "fox jumps over", "the lazy dog"]
        );
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_hard_at_a_character_boundary() {
        assert_eq!(split_text("ab🙂éf🙂gh", 3), ["ab🙂", "éf🙂", "gh"]);
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let text = "é".repeat(10);
        assert_eq!(text.len(), 20);
        assert_eq!(split_text(&text, 10), vec![text]);
    }

    #[test]
    fn whitespace_right_after_the_limit_is_a_clean_cut() {
        assert_eq!(split_text("abcde fghij", 5), ["abcde", "fghij"]);
    }

    #[test]
    fn a_limit_of_zero_is_treated_as_one() {
        assert_eq!(split_text("ab", 0), ["a", "b"]);
    }

    #[test]
    fn an_ai_answer_over_whatsapps_limit_becomes_text_messages_that_all_validate() {
        let paragraph = "Our opening hours are 9 to 5 on weekdays. On Saturdays we open at 10! \
                         Would you like to book a table? "
            .repeat(12);
        let answer = [paragraph.trim(); 5].join("\n\n");
        assert!(answer.chars().count() > MAX_TEXT_BODY);

        let parts = split_text(&answer, MAX_TEXT_BODY);

        assert!(parts.len() >= 2, "{}", parts.len());
        let to = WaId::parse("16505551234").unwrap();
        for part in &parts {
            Outgoing::text(to.clone(), part.clone()).validate().unwrap();
            // Paragraph boundaries exist, so every part is a run of whole paragraphs.
            assert!(part.ends_with('?'), "{:?}", &part[part.len() - 20..]);
        }
        assert_eq!(non_whitespace(&parts.concat()), non_whitespace(&answer));
    }

    /// Texts of words, punctuation, multi-byte characters and every kind of whitespace.
    fn fragments() -> impl Strategy<Value = String> {
        let pieces = vec![
            "a",
            "word",
            "longerword",
            "é",
            "🙂",
            "3.14",
            " ",
            "  ",
            "\t",
            "\n",
            "\n\n",
            "\r\n",
            "\n \n",
            ". ",
            "! ",
            "? ",
            ".",
            "x.y",
            "。",
            "漢字",
            "？",
        ];
        proptest::collection::vec(proptest::sample::select(pieces), 0..120)
            .prop_map(|pieces| pieces.concat())
    }

    /// Words of at most 10 characters, each followed by some whitespace.
    fn separated_words() -> impl Strategy<Value = String> {
        let words = proptest::sample::select(vec![
            "a",
            "word",
            "longerword",
            "é",
            "🙂",
            "3.14",
            "x.y",
            "end.",
            "what?",
            "wow!",
        ]);
        let gaps = proptest::sample::select(vec![" ", "  ", "\t", "\n", "\n\n", "\r\n", "\n \n"]);
        proptest::collection::vec((words, gaps), 0..80).prop_map(|pairs| {
            pairs
                .into_iter()
                .flat_map(|(word, gap)| [word, gap])
                .collect::<String>()
        })
    }

    proptest! {
        #[test]
        fn every_part_is_non_empty_trimmed_and_within_the_limit(
            text in fragments(),
            limit in 1usize..40,
        ) {
            for part in split_text(&text, limit) {
                prop_assert!(!part.is_empty());
                prop_assert_eq!(part.trim(), part.as_str());
                prop_assert!(part.chars().count() <= limit, "{:?}", part);
            }
        }

        #[test]
        fn joining_the_parts_loses_no_non_whitespace_content(
            text in fragments(),
            limit in 1usize..40,
        ) {
            let parts = split_text(&text, limit);
            prop_assert_eq!(non_whitespace(&parts.concat()), non_whitespace(&text));
        }

        #[test]
        fn a_text_that_fits_is_left_whole(text in fragments()) {
            let limit = text.trim().chars().count().max(1);
            let parts = split_text(&text, limit);
            if text.trim().is_empty() {
                prop_assert!(parts.is_empty());
            } else {
                prop_assert_eq!(parts, vec![text.trim().to_owned()]);
            }
        }

        #[test]
        fn words_no_longer_than_the_limit_are_never_cut(
            text in separated_words(),
            limit in 10usize..40,
        ) {
            let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
            let parts = split_text(&text, limit);
            let split_words: Vec<String> = parts.iter().flat_map(|p| words(p)).collect();
            prop_assert_eq!(split_words, words(&text));
        }
    }
}
