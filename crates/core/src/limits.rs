//! Argument validation shared by every op.

use confab_proto::{ErrorBody, ErrorCode};

use crate::Limits;

/// Checks a display name: 1 to `max` characters after trimming, at least
/// one of them visible, no control characters and no bidirectional
/// controls (which would let a name reorder the text around it). Returns
/// the trimmed name.
///
/// # Errors
///
/// `bad_request` saying what is wrong.
pub fn validate_name(name: &str, max: usize) -> Result<String, ErrorBody> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err(ErrorBody::new(ErrorCode::BadRequest, "name must not be empty"));
    }
    if chars > max {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("name is {chars} characters; at most {max} are allowed"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "name must not contain control characters",
        ));
    }
    if name.chars().any(is_bidi_control) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "name must not contain bidirectional control characters",
        ));
    }
    if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(ErrorBody::new(ErrorCode::BadRequest, "name must contain a visible character"));
    }
    Ok(name.to_owned())
}

/// What two names are compared by: lower-cased, without invisible and
/// format characters, white space folded to one space. Names with the
/// same key cannot be told apart on screen, so a room holds one of them.
pub fn name_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    let mut space = false;
    for c in name.chars().filter(|&c| !is_invisible(c)) {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !key.is_empty() {
            key.push(' ');
        }
        space = false;
        key.extend(c.to_lowercase());
    }
    key
}

/// Characters that reorder text: embeddings, overrides, isolates and
/// marks (Unicode's Bidi_Control property).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: Unicode's Default_Ignorable_Code_Point,
/// the format characters (category Cf) outside it, and the blank braille
/// pattern, which fonts draw as an empty cell.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{0600}'..='\u{0605}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Refuses a text field beyond its limit with `too_large`.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), ErrorBody> {
    // Cheap upper bound first: a string never has more chars than bytes.
    if value.len() > max {
        let chars = value.chars().count();
        if chars > max {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                format!("{field} is {chars} characters; at most {max} are allowed"),
            ));
        }
    }
    Ok(())
}

/// Validates a post's body, subject and cid.
pub(crate) fn check_post(
    limits: &Limits,
    body: &str,
    subject: Option<&str>,
    cid: Option<&str>,
) -> Result<(), ErrorBody> {
    check_len("body", body, limits.body_chars)?;
    if body.trim().is_empty() {
        return Err(ErrorBody::new(ErrorCode::BadRequest, "body must not be empty"));
    }
    if let Some(subject) = subject {
        check_len("subject", subject, limits.subject_chars)?;
        if subject.chars().any(char::is_control) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "subject must not contain control characters",
            ));
        }
    }
    if let Some(cid) = cid {
        check_len("cid", cid, limits.cid_chars)?;
        if cid.is_empty() {
            return Err(ErrorBody::new(ErrorCode::BadRequest, "cid must not be empty"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name("  Ann ", 32).unwrap(), "Ann");
        assert_eq!(validate_name("", 32).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(validate_name("   ", 32).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(validate_name("a\u{7}b", 32).unwrap_err().code, ErrorCode::BadRequest);
        assert!(validate_name(&"é".repeat(32), 32).is_ok());
        assert_eq!(validate_name(&"é".repeat(33), 32).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn names_that_show_nothing_or_reorder_text_are_refused() {
        for name in
            ["\u{200B}", "\u{200B}\u{2060}\u{FEFF}", " \u{3164} ", "\u{2800}\u{2800}", "\u{E0041}"]
        {
            assert_eq!(
                validate_name(name, 32).unwrap_err().code,
                ErrorCode::BadRequest,
                "{name:?}"
            );
        }
        for name in ["Ann\u{202E}", "\u{2066}Ann\u{2069}", "A\u{200F}nn"] {
            let refused = validate_name(name, 32).unwrap_err();
            assert_eq!(refused.code, ErrorCode::BadRequest, "{name:?}");
            assert!(refused.message.contains("bidirectional"), "{}", refused.message);
        }
        // Emoji sequences keep their joiners and variation selectors.
        assert_eq!(
            validate_name("\u{1F469}\u{200D}\u{1F4BB}", 32).unwrap(),
            "\u{1F469}\u{200D}\u{1F4BB}"
        );
        assert_eq!(validate_name("\u{2764}\u{FE0F}", 32).unwrap(), "\u{2764}\u{FE0F}");
    }

    #[test]
    fn names_that_look_the_same_have_the_same_key() {
        assert_eq!(name_key("Ann"), name_key("ann\u{200B}"));
        assert_eq!(name_key("Ann"), name_key("A\u{00AD}nn"));
        assert_eq!(name_key("Ann Lee"), name_key("ann\u{3000}\u{2009}lee"));
        assert_eq!(name_key("Ann"), name_key("\u{FEFF}ANN"));
        assert_ne!(name_key("Ann"), name_key("Anne"));
        assert_ne!(name_key("Ann Lee"), name_key("AnnLee"));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(check_len("body", &"ü".repeat(10), 10).is_ok());
        assert_eq!(check_len("body", &"ü".repeat(11), 10).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn posts() {
        let limits = Limits::default();
        assert!(check_post(&limits, "hi", Some("s"), Some("c1")).is_ok());
        assert_eq!(check_post(&limits, " \n", None, None).unwrap_err().code, ErrorCode::BadRequest);
        let long = "x".repeat(4001);
        assert_eq!(check_post(&limits, &long, None, None).unwrap_err().code, ErrorCode::TooLarge);
        let long = "x".repeat(121);
        assert_eq!(
            check_post(&limits, "hi", Some(&long), None).unwrap_err().code,
            ErrorCode::TooLarge
        );
    }
}
