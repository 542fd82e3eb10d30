//! The TLS certificates of an application's host move with it.
//!
//! Why: B's nginx serves the application's host with a certificate NixOS's ACME module obtains by HTTP-01, which
//! succeeds only once the name resolves to B. Until then B has the module's self-signed placeholder, and after
//! the DNS switch the order is tried again only by the daily timer of `acme-order-renew-<host>` (nixpkgs
//! security/acme/default.nix), so browsers and federating servers would refuse B for up to a day. With A's
//! certificate copied, B serves A's valid certificate from its start.
//!
//! What moves, as the ACME module lays it out (security/acme/default.nix, `certToConfig`): `/var/lib/acme/<host>`,
//! the certificate nginx reads (`fullchain.pem`, `key.pem`, `chain.pem`, `full.pem`) and `acme-success`, whose
//! presence makes `acme-<host>.service` leave the files alone instead of writing a new self-signed placeholder
//! ("until we have seen a successful ACME certificate at least once").
//!
//! Not lego's folder `/var/lib/acme/.lego/<host>` (review 25, B2): with it, B's order unit would renew A's
//! certificate (`lego renew`) with B's own account, which the CA refuses under ARI ("requester account did not
//! request the certificate being replaced", go-acme/lego#3147) — daily, then for good once within 30 days of
//! expiry. Without it the unit finds no lego certificate and orders a new one with B's account (`lego run`),
//! which succeeds once the names resolve to B, long before A's copied certificate expires. Not the ACME account
//! either (`.lego/accounts/<hash>`: its name hashes the provider's ACME server and e-mail, so B's is B's). The
//! folder keeps its modes; owners are mapped by name (`acme`, and the certificate's group, nginx's), and
//! `acme-setup.service` sets both again on its next start.

use super::super::job::DirectoryMove;

/// Where NixOS's ACME module keeps a certificate's files (`security.acme.certs.<name>.directory`).
const ACME_STATE: &str = "/var/lib/acme";

/// The directory move carrying the certificate of `host` (named after the virtual host, as `enableACME` names
/// it) from `source_host` (`root@A`) to the same places at B. Used by the planner's jobs.
pub(crate) fn certificate_moves(host: &str, source_host: &str) -> Vec<DirectoryMove> {
    [(format!("tls-{host}"), format!("{ACME_STATE}/{host}"))]
        .into_iter()
        .map(|(name, path)| DirectoryMove {
            name,
            source: format!("ssh://{source_host}{path}"),
            target: path,
        })
        .collect()
}
