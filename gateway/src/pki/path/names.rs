//! General names and name constraints (RFC 5280 4.2.1.10, 6.1.3 (b)-(c), 6.1.4 (g)).

use x509_parser::extensions::GeneralName;

use super::name::NormName;

/// A general name in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenName {
    /// directoryName, normalized.
    Dir(NormName),
    /// rfc822Name.
    Email(String),
    /// dNSName.
    Dns(String),
    /// uniformResourceIdentifier.
    Uri(String),
    /// iPAddress: the address (subjectAltName) or address and mask (name constraint).
    Ip(Vec<u8>),
    /// otherName, x400Address, ediPartyName, registeredID: the form's tag number.
    Other(u8),
}

impl GenName {
    /// Converts x509-parser's general name.
    pub fn from_x509(g: &GeneralName<'_>) -> GenName {
        match g {
            GeneralName::DirectoryName(n) => GenName::Dir(NormName::from_x509(n)),
            GeneralName::RFC822Name(s) => GenName::Email((*s).to_string()),
            GeneralName::DNSName(s) => GenName::Dns((*s).to_string()),
            GeneralName::URI(s) => GenName::Uri((*s).to_string()),
            GeneralName::IPAddress(b) => GenName::Ip(b.to_vec()),
            GeneralName::OtherName(..) => GenName::Other(0),
            GeneralName::X400Address(_) => GenName::Other(3),
            GeneralName::EDIPartyName(_) => GenName::Other(5),
            GeneralName::RegisteredID(_) => GenName::Other(8),
            GeneralName::Invalid(t, _) => GenName::Other(u8::try_from(t.0).unwrap_or(0xff)),
        }
    }

    fn form(&self) -> u8 {
        match self {
            GenName::Other(t) => *t,
            GenName::Email(_) => 1,
            GenName::Dns(_) => 2,
            GenName::Dir(_) => 4,
            GenName::Uri(_) => 6,
            GenName::Ip(_) => 7,
        }
    }
}

/// The subtrees of one nameConstraints extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameConstraints {
    /// permittedSubtrees bases (`None` when absent).
    pub permitted: Option<Vec<GenName>>,
    /// excludedSubtrees bases.
    pub excluded: Vec<GenName>,
}

/// The names of a certificate subject that constraints apply to.
pub struct SubjectNames<'a> {
    /// The subject DN (skipped when empty).
    pub dn: &'a NormName,
    /// emailAddress attributes of the subject DN (checked as rfc822Name).
    pub dn_emails: &'a [String],
    /// subjectAltName entries.
    pub san: &'a [GenName],
}

impl SubjectNames<'_> {
    fn each(&self) -> impl Iterator<Item = GenName> + '_ {
        let dn = (!self.dn.is_empty()).then(|| GenName::Dir(self.dn.clone()));
        dn.into_iter()
            .chain(self.dn_emails.iter().map(|e| GenName::Email(e.clone())))
            .chain(self.san.iter().cloned())
    }
}

/// Accumulated constraints along a path: every permitted set must admit a name of its
/// form, no excluded subtree may contain it.
#[derive(Debug, Clone, Default)]
pub struct ConstraintState {
    permitted: Vec<Vec<GenName>>,
    excluded: Vec<GenName>,
}

impl ConstraintState {
    /// Adds a certificate's nameConstraints (6.1.4 (g)).
    pub fn add(&mut self, nc: &NameConstraints) {
        if let Some(p) = &nc.permitted {
            self.permitted.push(p.clone());
        }
        self.excluded.extend(nc.excluded.iter().cloned());
    }

    /// Whether nothing constrains.
    pub fn is_empty(&self) -> bool {
        self.permitted.is_empty() && self.excluded.is_empty()
    }

    /// Checks a subject's names (6.1.3 (b), (c)); `Err` names the offending name.
    pub fn check(&self, names: &SubjectNames<'_>) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        for name in names.each() {
            for set in &self.permitted {
                let same_form: Vec<&GenName> =
                    set.iter().filter(|b| b.form() == name.form()).collect();
                if same_form.is_empty() {
                    continue;
                }
                match name {
                    GenName::Other(_) => {
                        return Err(format!(
                            "name form {} is constrained but not supported",
                            name.form()
                        ))
                    }
                    _ => {
                        if !same_form.iter().any(|b| within(&name, b)) {
                            return Err(format!(
                                "{} is outside the permitted subtrees",
                                show(&name)
                            ));
                        }
                    }
                }
            }
            for b in self.excluded.iter().filter(|b| b.form() == name.form()) {
                if matches!(name, GenName::Other(_)) || within(&name, b) {
                    return Err(format!("{} is within an excluded subtree", show(&name)));
                }
            }
        }
        Ok(())
    }
}

fn show(n: &GenName) -> String {
    match n {
        GenName::Dir(_) => "the directory name".into(),
        GenName::Email(s) => format!("rfc822Name {s}"),
        GenName::Dns(s) => format!("dNSName {s}"),
        GenName::Uri(s) => format!("URI {s}"),
        GenName::Ip(b) => format!("iPAddress {}", hex::encode(b)),
        GenName::Other(t) => format!("general name of form {t}"),
    }
}

/// Whether `name` lies within the subtree `base` (same form assumed).
fn within(name: &GenName, base: &GenName) -> bool {
    match (name, base) {
        (GenName::Dir(n), GenName::Dir(b)) => n.within(b),
        (GenName::Email(n), GenName::Email(b)) => email_within(n, b),
        (GenName::Dns(n), GenName::Dns(b)) => dns_within(n, b),
        (GenName::Uri(n), GenName::Uri(b)) => match uri_host(n) {
            Some(h) => host_within(&h, b),
            None => false,
        },
        (GenName::Ip(n), GenName::Ip(b)) => {
            b.len() == 2 * n.len()
                && n.iter()
                    .zip(&b[..n.len()])
                    .zip(&b[n.len()..])
                    .all(|((a, net), mask)| a & mask == net & mask)
        }
        _ => false,
    }
}

fn email_within(name: &str, base: &str) -> bool {
    let Some((local, host)) = name.rsplit_once('@') else {
        return false;
    };
    if let Some((blocal, bhost)) = base.rsplit_once('@') {
        // A particular mailbox.
        return local == blocal && host.eq_ignore_ascii_case(bhost);
    }
    if base.starts_with('.') {
        // Any host in the domain.
        let h = host.to_ascii_lowercase();
        return h.ends_with(&base.to_ascii_lowercase());
    }
    host.eq_ignore_ascii_case(base)
}

fn dns_within(name: &str, base: &str) -> bool {
    if base.is_empty() {
        return true;
    }
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let b = base.trim_end_matches('.').to_ascii_lowercase();
    if let Some(b) = b.strip_prefix('.') {
        return n.ends_with(&format!(".{b}"));
    }
    n == b || n.ends_with(&format!(".{b}"))
}

/// URI constraints apply to the host: `.example.com` means any host in the domain,
/// `example.com` that host only.
fn host_within(host: &str, base: &str) -> bool {
    let h = host.to_ascii_lowercase();
    let b = base.to_ascii_lowercase();
    if b.starts_with('.') {
        h.ends_with(&b)
    } else {
        h == b
    }
}

fn uri_host(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once("://")?;
    let auth = rest.split(['/', '?', '#']).next()?;
    let auth = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    let host = if let Some(v6) = auth.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        auth.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_email_uri_ip_matching() {
        assert!(dns_within("a.example.com", "example.com"));
        assert!(dns_within("example.com", "example.com"));
        assert!(!dns_within("badexample.com", "example.com"));
        assert!(!dns_within("example.com", ".example.com"));
        assert!(email_within("u@mail.example.com", ".example.com"));
        assert!(!email_within("u@example.com", ".example.com"));
        assert!(email_within("u@Example.com", "example.com"));
        assert!(!email_within("u@a.example.com", "example.com"));
        assert!(email_within("u@example.com", "u@example.com"));
        assert!(!email_within("v@example.com", "u@example.com"));
        assert_eq!(
            uri_host("http://user@Host.example:8080/x").as_deref(),
            Some("Host.example")
        );
        assert!(host_within("a.example.com", ".example.com"));
        assert!(!host_within("a.example.com", "example.com"));
        let ip = GenName::Ip(vec![10, 1, 2, 3]);
        assert!(within(&ip, &GenName::Ip(vec![10, 0, 0, 0, 255, 0, 0, 0])));
        assert!(!within(&ip, &GenName::Ip(vec![11, 0, 0, 0, 255, 0, 0, 0])));
    }
}
