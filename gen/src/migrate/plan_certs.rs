//! The TLS certificates of an application's host move with it.
//!
//! Why: B's nginx serves the application's host with a certificate NixOS's ACME module obtains by HTTP-01, which
//! succeeds only once the name resolves to B. Until then B has the module's self-signed placeholder, and after
//! the DNS switch the first order fails, or waits: `acme-order-renew-<host>` retries a failed order after
//! `RestartSec` = 15 minutes (nixpkgs security/acme/default.nix), so browsers and federating servers would refuse
//! B for up to a quarter of an hour. With A's certificate copied, B serves A's valid certificate from its start.
//!
//! What moves, as the ACME module lays it out (security/acme/default.nix, `certToConfig`):
//! - `/var/lib/acme/<host>`: the certificate nginx reads (`fullchain.pem`, `key.pem`, `chain.pem`, `full.pem`)
//!   and `acme-success`, whose presence makes `acme-<host>.service` leave the files alone instead of writing a
//!   new self-signed placeholder ("until we have seen a successful ACME certificate at least once");
//! - `/var/lib/acme/.lego/<host>`: lego's copy of the certificate and key and `domainhash.txt`, with which
//!   `acme-order-renew-<host>` renews (`lego renew --days`, a no-op until 30 days before expiry) instead of
//!   ordering anew.
//!
//! Not the ACME account (`/var/lib/acme/.lego/accounts/<hash>`): its directory name hashes the provider's ACME
//! server and e-mail, so B's account is B's; B's module registers it, and a renewal with another account than
//! the one that ordered is allowed. The directories keep their modes; owners are mapped by name (`acme`, and the
//! certificate's group, nginx's), and `acme-setup.service` sets both again on its next start.

use super::super::job::DirectoryMove;

/// Where NixOS's ACME module keeps a certificate's files (`security.acme.certs.<name>.directory`).
const ACME_STATE: &str = "/var/lib/acme";

/// The directory moves carrying the certificate of `host` (named after the virtual host, as `enableACME` names
/// it) from `source_host` (`root@A`) to the same places at B. Used by the planner's jobs.
pub(crate) fn certificate_moves(host: &str, source_host: &str) -> Vec<DirectoryMove> {
    [
        (format!("tls-{host}"), format!("{ACME_STATE}/{host}")),
        (
            format!("tls-lego-{host}"),
            format!("{ACME_STATE}/.lego/{host}"),
        ),
    ]
    .into_iter()
    .map(|(name, path)| DirectoryMove {
        name,
        source: format!("ssh://{source_host}{path}"),
        target: path,
    })
    .collect()
}
