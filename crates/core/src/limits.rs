//! Argument validation shared by every op.

use confab_proto::{ErrorBody, ErrorCode};

use crate::Limits;

/// Checks a display name: 1 to `max` characters after trimming, no control
/// characters. Returns the trimmed name.
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
    Ok(name.to_owned())
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
