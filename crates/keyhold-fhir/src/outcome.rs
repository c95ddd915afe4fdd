//! OperationOutcome: every error the API gives is one, with the HTTP status
//! chosen by the caller.

use serde_json::{json, Value};

/// The issue types we use (a subset of FHIR's `issue-type` value set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueType {
    /// Not signed in (401).
    Login,
    /// Signed in, but not allowed (403); reads of records answer `NotFound`
    /// instead, so that a record's existence is not revealed.
    Forbidden,
    /// No such resource, or not one this principal may see (404).
    NotFound,
    /// A resource type or interaction this server does not offer (404/405).
    NotSupported,
    /// A malformed request (400).
    Invalid,
    /// Something on our side (500/503).
    Exception,
}

impl IssueType {
    fn code(self) -> &'static str {
        match self {
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::NotFound => "not-found",
            IssueType::NotSupported => "not-supported",
            IssueType::Invalid => "invalid",
            IssueType::Exception => "exception",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationOutcome {
    pub issue: IssueType,
    /// Said to a person reading the response; never record content.
    pub diagnostics: String,
}

impl OperationOutcome {
    pub fn new(issue: IssueType, diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            issue,
            diagnostics: diagnostics.into(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": self.issue.code(),
                "diagnostics": self.diagnostics,
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_has_one_error_issue_with_its_code() {
        let v = OperationOutcome::new(IssueType::NotFound, "No such Patient").to_json();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["severity"], "error");
        assert_eq!(v["issue"][0]["code"], "not-found");
        assert_eq!(v["issue"][0]["diagnostics"], "No such Patient");
    }
}
