//! The VM tests' stand-ins for the provider's Garage secrets: fixed node keys (whose ids replace the provider's in
//! a test's description), one S3 test key per operator and application, the test environment file. Used by the
//! storage test and the deployment tests alike, so both place the same values.

use crate::deploy::secrets::Holds;
use crate::deploy::storage;
use crate::model::Spec;
use crate::storage::description::Description;
use crate::storage::node_key::NodeKey;

/// The test's RPC secret (64 hex digits), admin and metrics tokens: the environment file every node reads.
pub(crate) const TEST_ENVIRONMENT: &str = "GARAGE_RPC_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nGARAGE_ADMIN_TOKEN=fedigen-test-admin-token\nGARAGE_METRICS_TOKEN=fedigen-test-metrics-token\n";

/// The admin token of [`TEST_ENVIRONMENT`], for the script's admin API calls.
pub(crate) const TEST_ADMIN_TOKEN: &str = "fedigen-test-admin-token";

/// A fixed test key for Garage node `node`: its seed is the node's name repeated (tests only; the id is the
/// public key, so every node's id is known when the test is generated).
pub(crate) fn test_node_key(node: &str) -> NodeKey {
    let mut seed = [0u8; 32];
    let name = format!("fedigen-test-{node}");
    for (i, b) in seed.iter_mut().enumerate() {
        *b = name.as_bytes()[i % name.len()];
    }
    NodeKey::from_seed(seed)
}

/// The description's nodes with their test keys' ids ([`test_node_key`]): the one place a VM test replaces the
/// provider's node ids, whose secret keys a test cannot have.
pub(crate) fn with_test_node_ids(description: &mut Description) {
    for node in &mut description.nodes {
        node.id = test_node_key(&node.name).id();
    }
}

/// The test S3 key file of an operator's application (`AWS_ACCESS_KEY_ID=`, `AWS_SECRET_ACCESS_KEY=`), the same
/// on the application's machine and in the Garage node's copy. Each application of each operator has a key id
/// of its own, derived from both names: `fedigen storage apply` refuses one id under two names or files
/// (`resolve_key_ids`), so one shared test key would stop the provisioning unit of any test with two applications.
pub(crate) fn test_s3_key(operator: &str, app: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex = |what: &str| {
        Sha256::digest(format!("fedigen-test-s3-{what}/{operator}/{app}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    format!(
        "AWS_ACCESS_KEY_ID=GK{}\nAWS_SECRET_ACCESS_KEY={}\n",
        &hex("id")[..24],
        hex("secret")
    )
}

/// The test password of an operator's database at provider A, which a migration test's job reads it with over
/// TCP: set on A's role or account by the test (as A's provider would) and placed at B as the job's password
/// file. Hexadecimal digits only (and a newline, as a secret file ends), so it needs no quoting in SQL or a shell.
pub(crate) fn test_database_password(operator: &str, database: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(format!("fedigen-test-db-password/{operator}/{database}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}\n", &hex[..32])
}

/// The test value of a Garage node's secret: the node's key copy of an application's S3 key ([`test_s3_key`],
/// by the operator's index), else the generic placeholder of `deploy::storage::test_secret`.
pub(crate) fn test_secret_value(spec: &Spec, holds: &Holds) -> String {
    match holds {
        Holds::S3Key {
            operator: Some(i),
            app,
        } => spec
            .operators
            .get(*i)
            .map(|o| test_s3_key(&o.name, app))
            .unwrap_or_else(|| storage::test_secret(holds)),
        _ => storage::test_secret(holds),
    }
}

/// `bytes` as `printf` octal escapes (`\101`), so a binary file is written by a shell without a tool of its own.
pub(crate) fn printf_octal(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_node_keys_differ_per_node_and_are_stable() {
        assert_ne!(test_node_key("ams1").id(), test_node_key("ams2").id());
        assert_eq!(test_node_key("ams1").id(), test_node_key("ams1").id());
    }

    #[test]
    fn printf_octal_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = printf_octal(&bytes);
        let back: Vec<u8> = text
            .split('\\')
            .skip(1)
            .map(|o| u8::from_str_radix(o, 8).unwrap())
            .collect();
        assert_eq!(back, bytes);
    }
}
