//! The policy: which client may get which capability, from the capability
//! templates of the config. A request is granted only inside one template.

mod action;

use crate::config::{BindingRequirement, TemplateConfig};
use ekey_verifier::ActionPattern;
use std::fmt;
use std::sync::Arc;

/// How the client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedVia {
    /// `scope=<template name>`: the template as configured.
    Scope,
    /// `authorization_details` (RFC 9396): one action, narrowed as asked.
    AuthorizationDetails,
}

/// A capability as asked for, before the policy looked at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityRequest {
    /// How it was asked.
    pub via: RequestedVia,
    /// A template by name.
    pub template: Option<String>,
    /// `METHOD:/path`; may be omitted when the template has exactly one action.
    pub action: Option<String>,
    /// Uses; the template's default when `None`.
    pub limit: Option<u32>,
    /// Further actions; `None` = the template's for `scope`, none for details.
    pub subcap: Option<Vec<String>>,
    /// Audiences (RFC 9396 `locations`); all of the template's when `None`.
    pub audience: Option<Vec<String>>,
}

impl CapabilityRequest {
    /// A request for a template by name.
    pub fn scope(template: impl Into<String>) -> Self {
        Self {
            via: RequestedVia::Scope,
            template: Some(template.into()),
            action: None,
            limit: None,
            subcap: None,
            audience: None,
        }
    }
}

/// The proof of possession the request offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfferedBinding {
    /// A valid DPoP proof.
    Dpop,
    /// An mTLS client certificate.
    Mtls,
}

/// What the policy grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The template it comes from.
    pub template: Arc<TemplateConfig>,
    /// `cap.action`.
    pub action: String,
    /// `cap.limit`.
    pub limit: u32,
    /// `cap.subcap`.
    pub subcap: Vec<String>,
    /// `aud`.
    pub audience: Vec<String>,
}

/// Why a request falls outside every template. The display text is the
/// `error_description` sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No template has this name.
    #[error("unknown template {0:?}")]
    UnknownTemplate(String),
    /// The template exists but does not list this client.
    #[error("client {client:?} may not use template {template:?}")]
    ClientNotAllowed {
        /// The client.
        client: String,
        /// The template.
        template: String,
    },
    /// The client is in no template at all.
    #[error("client {0:?} is not allowed any capability")]
    NoTemplates(String),
    /// No template of this client allows the action.
    #[error("no template allows client {client:?} the action {action:?}")]
    NoTemplateForAction {
        /// The client.
        client: String,
        /// The action asked for.
        action: String,
    },
    /// The action (or a subcap entry) is not `METHOD:/path`, or its path is
    /// not in normal form.
    #[error("action {action:?}: {reason}")]
    InvalidAction {
        /// The action asked for.
        action: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The template has several actions and the request named none.
    #[error("template {0:?} has several actions: ask for one with authorization_details")]
    ActionRequired(String),
    /// The action is outside the template.
    #[error("action {action:?} is outside template {template:?}")]
    ActionOutside {
        /// The action asked for.
        action: String,
        /// The template.
        template: String,
    },
    /// More uses than the template allows.
    #[error("limit {limit} exceeds the maximum of {max} for template {template:?}")]
    LimitTooHigh {
        /// Asked for.
        limit: u32,
        /// Allowed.
        max: u32,
        /// The template.
        template: String,
    },
    /// A subcap action the template does not allow.
    #[error("subcap {action:?} is not allowed by template {template:?}")]
    SubcapOutside {
        /// The subcap asked for.
        action: String,
        /// The template.
        template: String,
    },
    /// An audience the template does not name.
    #[error("audience {audience:?} is not allowed by template {template:?}")]
    AudienceOutside {
        /// The audience asked for.
        audience: String,
        /// The template.
        template: String,
    },
    /// The template needs a binding the request does not offer.
    #[error("template {template:?} requires {required} binding")]
    Binding {
        /// The template.
        template: String,
        /// What it requires.
        required: BindingName,
    },
}

/// A binding's name for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingName(pub BindingRequirement);

impl fmt::Display for BindingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            BindingRequirement::Dpop => "a DPoP (RFC 9449)",
            BindingRequirement::Mtls => "an mTLS certificate (RFC 8705)",
            BindingRequirement::Any => "a DPoP or mTLS",
        })
    }
}

/// The templates, in config order (the first match wins when a request does
/// not name its template).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    templates: Vec<Arc<TemplateConfig>>,
}

impl Policy {
    /// A policy over validated templates.
    pub fn new(templates: impl IntoIterator<Item = TemplateConfig>) -> Self {
        Self { templates: templates.into_iter().map(Arc::new).collect() }
    }

    /// The template named `name`.
    pub fn template(&self, name: &str) -> Option<&Arc<TemplateConfig>> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// Every template.
    pub fn templates(&self) -> &[Arc<TemplateConfig>] {
        &self.templates
    }

    /// Grants `req` to `client` offering `binding`, or says why not.
    pub fn grant(&self, client: &str, req: &CapabilityRequest, binding: OfferedBinding) -> Result<Grant, PolicyError> {
        if let Some(a) = &req.action {
            ActionPattern::parse(a)
                .map_err(|e| PolicyError::InvalidAction { action: short(a), reason: e.to_string() })?;
        }
        let template = self.choose(client, req)?;
        let name = || template.name.clone();

        let action = match &req.action {
            Some(a) => a.clone(),
            None => match template.actions.as_slice() {
                [only] => only.clone(),
                _ => return Err(PolicyError::ActionRequired(name())),
            },
        };
        if !template.actions.iter().any(|g| action::narrows(&action, g)) {
            return Err(PolicyError::ActionOutside { action: short(&action), template: name() });
        }

        let limit = req.limit.unwrap_or(template.default_limit);
        if limit > template.max_limit {
            return Err(PolicyError::LimitTooHigh { limit, max: template.max_limit, template: name() });
        }

        let subcap = match (&req.subcap, req.via) {
            (Some(list), _) => list.clone(),
            (None, RequestedVia::Scope) => template.subcap.clone(),
            (None, RequestedVia::AuthorizationDetails) => Vec::new(),
        };
        for s in &subcap {
            ActionPattern::parse(s)
                .map_err(|e| PolicyError::InvalidAction { action: short(s), reason: e.to_string() })?;
            if !template.subcap.iter().any(|g| action::narrows(s, g)) {
                return Err(PolicyError::SubcapOutside { action: short(s), template: name() });
            }
        }

        let audience = match &req.audience {
            Some(list) => {
                if let Some(a) = list.iter().find(|a| !template.audience.contains(a)) {
                    return Err(PolicyError::AudienceOutside { audience: short(a), template: name() });
                }
                list.clone()
            }
            None => template.audience.clone(),
        };

        let bound = matches!(
            (template.binding, binding),
            (BindingRequirement::Any, _)
                | (BindingRequirement::Dpop, OfferedBinding::Dpop)
                | (BindingRequirement::Mtls, OfferedBinding::Mtls)
        );
        if !bound {
            return Err(PolicyError::Binding { template: name(), required: BindingName(template.binding) });
        }
        Ok(Grant { template: Arc::clone(template), action, limit, subcap, audience })
    }

    /// The template the request names, or the first of the client's that
    /// allows the requested action.
    fn choose(&self, client: &str, req: &CapabilityRequest) -> Result<&Arc<TemplateConfig>, PolicyError> {
        let allowed = |t: &&Arc<TemplateConfig>| t.clients.iter().any(|c| c == client);
        if let Some(name) = &req.template {
            let t = self.template(name).ok_or_else(|| PolicyError::UnknownTemplate(short(name)))?;
            if !allowed(&t) {
                return Err(PolicyError::ClientNotAllowed { client: short(client), template: t.name.clone() });
            }
            return Ok(t);
        }
        let mut mine = self.templates.iter().filter(allowed).peekable();
        if mine.peek().is_none() {
            return Err(PolicyError::NoTemplates(short(client)));
        }
        // Without a template name the request is authorization_details with
        // an action (the parser makes sure of that).
        let action = req.action.as_deref().unwrap_or_default();
        mine.find(|t| t.actions.iter().any(|g| action::narrows(action, g)))
            .ok_or_else(|| PolicyError::NoTemplateForAction { client: short(client), action: short(action) })
    }
}

/// Request values echoed in messages are cut short.
fn short(s: &str) -> String {
    s.chars().take(96).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let t = |name: &str, clients: &[&str], actions: &[&str]| TemplateConfig {
            name: name.into(),
            clients: clients.iter().map(|c| c.to_string()).collect(),
            actions: actions.iter().map(|c| c.to_string()).collect(),
            subcap: vec!["GET:/payments/:id".into()],
            max_limit: 3,
            default_limit: 1,
            ttl: 60,
            audience: vec!["https://api".into(), "https://api2".into()],
            binding: BindingRequirement::Any,
            scope: None,
        };
        let mut mtls = t("mtls.only", &["a"], &["GET:/m"]);
        mtls.binding = BindingRequirement::Mtls;
        Policy::new([
            t("payments.create", &["a", "b"], &["POST:/payments/:id"]),
            t("multi", &["a"], &["GET:/x", "GET:/y"]),
            t("b.only", &["b"], &["DELETE:/payments/:id"]),
            mtls,
        ])
    }

    fn details(action: &str) -> CapabilityRequest {
        CapabilityRequest {
            via: RequestedVia::AuthorizationDetails,
            template: None,
            action: Some(action.into()),
            limit: None,
            subcap: None,
            audience: None,
        }
    }

    #[test]
    fn scope_grants_the_template_as_configured() {
        let g = policy().grant("a", &CapabilityRequest::scope("payments.create"), OfferedBinding::Dpop).unwrap();
        assert_eq!(g.action, "POST:/payments/:id");
        assert_eq!((g.limit, g.subcap.len(), g.audience.len()), (1, 1, 2));
        assert_eq!(g.template.name, "payments.create");
    }

    #[test]
    fn details_narrow_inside_the_template() {
        let p = policy();
        let mut r = details("POST:/payments/42");
        r.limit = Some(3);
        r.subcap = Some(vec!["GET:/payments/42".into()]);
        r.audience = Some(vec!["https://api2".into()]);
        let g = p.grant("a", &r, OfferedBinding::Dpop).unwrap();
        assert_eq!((g.action.as_str(), g.limit), ("POST:/payments/42", 3));
        assert_eq!(g.audience, vec!["https://api2".to_string()]);
        assert!(g.subcap == vec!["GET:/payments/42".to_string()]);
        assert!(p.grant("a", &details("POST:/payments/42"), OfferedBinding::Dpop).unwrap().subcap.is_empty());
    }

    #[test]
    fn refusals() {
        let p = policy();
        let grant = |client: &str, r: &CapabilityRequest| p.grant(client, r, OfferedBinding::Dpop).unwrap_err();
        assert!(matches!(grant("a", &details("POST:/refunds/1")), PolicyError::NoTemplateForAction { .. }));
        assert!(matches!(grant("c", &details("POST:/payments/1")), PolicyError::NoTemplates(_)));
        assert!(matches!(grant("a", &CapabilityRequest::scope("nope")), PolicyError::UnknownTemplate(_)));
        assert!(matches!(grant("a", &CapabilityRequest::scope("b.only")), PolicyError::ClientNotAllowed { .. }));
        assert!(matches!(grant("a", &CapabilityRequest::scope("multi")), PolicyError::ActionRequired(_)));
        assert!(matches!(grant("a", &details("post")), PolicyError::InvalidAction { .. }));
        let mut r = details("POST:/payments/1");
        r.limit = Some(4);
        assert_eq!(grant("a", &r).to_string(), "limit 4 exceeds the maximum of 3 for template \"payments.create\"");
        let mut r = details("POST:/payments/1");
        r.subcap = Some(vec!["DELETE:/payments/1".into()]);
        assert!(matches!(grant("a", &r), PolicyError::SubcapOutside { .. }));
        let mut r = details("POST:/payments/1");
        r.audience = Some(vec!["https://evil".into()]);
        assert!(matches!(grant("a", &r), PolicyError::AudienceOutside { .. }));
        let mut r = details("GET:/x");
        r.template = Some("payments.create".into());
        assert!(matches!(grant("a", &r), PolicyError::ActionOutside { .. }));
        assert!(matches!(grant("a", &CapabilityRequest::scope("mtls.only")), PolicyError::Binding { .. }));
    }

    #[test]
    fn actions_outside_normal_form_are_refused_not_narrowed() {
        // Each would "narrow" POST:/payments/:id segment by segment, yet a
        // router reads it as another resource (or refuses it).
        let p = policy();
        for action in ["POST:/payments/42%2F..%2Fadmin", "POST:/payments/%2e%2e", "POST:/payments/4%002"] {
            let e = p.grant("a", &details(action), OfferedBinding::Dpop).unwrap_err();
            assert!(matches!(e, PolicyError::InvalidAction { .. }), "{action}: {e:?}");
            let mut r = details("POST:/payments/1");
            r.subcap = Some(vec![action.replace("POST", "GET")]);
            let e = p.grant("a", &r, OfferedBinding::Dpop).unwrap_err();
            assert!(matches!(e, PolicyError::InvalidAction { .. }), "subcap {action}: {e:?}");
        }
    }

    #[test]
    fn first_matching_template_of_the_client_wins() {
        let p = policy();
        let g = p.grant("b", &details("DELETE:/payments/9"), OfferedBinding::Dpop).unwrap();
        assert_eq!(g.template.name, "b.only");
    }
}
