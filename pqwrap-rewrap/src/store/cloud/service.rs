//! The two services, where they differ: how a client is configured from the environment, and
//! which token pins a version (Azure's ETag, GCS's generation).

use std::collections::HashMap;
use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ObjectStore, UpdateVersion};

use super::{ConnectError, retry_config};

/// The environment a store is configured from (the process's, in the CLI).
pub type Env = HashMap<String, String>;

/// The version of an object that was read: what later reads and the conditional write are
/// pinned to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pin {
    /// Its ETag.
    pub etag: Option<String>,
    /// Its version: the generation on GCS, the version id on a versioned Azure container.
    pub version: Option<String>,
}

/// Which service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Service {
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl Service {
    /// Its name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Gcs => "Google Cloud Storage",
            Service::Azure => "Azure Blob Storage",
        }
    }

    /// A client for `bucket`, configured by the service's variables in `env`, as the
    /// service's own tools read them: `GOOGLE_SERVICE_ACCOUNT` (or `SERVICE_ACCOUNT`),
    /// `GOOGLE_APPLICATION_CREDENTIALS`, `GOOGLE_BASE_URL`, ... for GCS, and
    /// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
    /// `AZURE_CLIENT_ID`, `AZURE_STORAGE_USE_EMULATOR`, ... for Azure; else the platform's
    /// (instance metadata, managed or workload identity). Plain `http://` endpoints need
    /// `GOOGLE_ALLOW_HTTP=true` or `AZURE_ALLOW_HTTP=true`. Azurite is reached with
    /// `AZURE_STORAGE_USE_EMULATOR=true`, at `AZURITE_BLOB_STORAGE_URL` (which object_store
    /// reads from the process environment itself).
    pub(crate) fn build(
        self,
        bucket: &str,
        env: &Env,
        attempts: u32,
    ) -> Result<Arc<dyn ObjectStore>, ConnectError> {
        let config = |error| ConnectError::Config {
            service: self.name(),
            error: Box::new(error),
        };
        let allowed = |var: &str| {
            env.get(var)
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
        };
        match self {
            Service::Gcs => {
                if let Some(url) = env.get("GOOGLE_BASE_URL")
                    && url.starts_with("http://")
                    && !allowed("GOOGLE_ALLOW_HTTP")
                {
                    return Err(ConnectError::PlainHttp(url.clone(), "GOOGLE_ALLOW_HTTP"));
                }
                let mut b = GoogleCloudStorageBuilder::new();
                if let Some(sa) = env.get("SERVICE_ACCOUNT") {
                    b = b.with_service_account_path(sa);
                }
                for (k, v) in env {
                    if k.starts_with("GOOGLE_")
                        && let Ok(key) = k.to_ascii_lowercase().parse()
                    {
                        b = b.with_config(key, v);
                    }
                }
                let store = b
                    .with_bucket_name(bucket)
                    .with_retry(retry_config(attempts))
                    .build()
                    .map_err(config)?;
                Ok(Arc::new(store))
            }
            Service::Azure => {
                let emulator = allowed("AZURE_STORAGE_USE_EMULATOR");
                for var in ["AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT"] {
                    if let Some(url) = env.get(var)
                        && url.starts_with("http://")
                        && !emulator
                        && !allowed("AZURE_ALLOW_HTTP")
                    {
                        return Err(ConnectError::PlainHttp(url.clone(), "AZURE_ALLOW_HTTP"));
                    }
                }
                let mut b = MicrosoftAzureBuilder::new();
                for (k, v) in env {
                    if k.starts_with("AZURE_")
                        && let Ok(key) = k.to_ascii_lowercase().parse()
                    {
                        b = b.with_config(key, v);
                    }
                }
                let store = b
                    .with_container_name(bucket)
                    .with_retry(retry_config(attempts))
                    .build()
                    .map_err(config)?;
                Ok(Arc::new(store))
            }
        }
    }

    /// The precondition of a conditional write of the version `pin` names.
    pub(crate) fn update(self, pin: &Pin) -> UpdateVersion {
        match self {
            // Azure compares the ETag (the version id names a past version, not the current).
            Service::Azure => UpdateVersion {
                e_tag: pin.etag.clone(),
                version: None,
            },
            // GCS's precondition is on the generation.
            Service::Gcs => UpdateVersion {
                e_tag: None,
                version: pin.version.clone(),
            },
        }
    }

    /// What reads of the version `pin` names are pinned with: `(if_match, version)`.
    pub(crate) fn read_pin(self, pin: &Pin) -> (Option<String>, Option<String>) {
        match self {
            Service::Azure => (pin.etag.clone(), None),
            Service::Gcs => (None, pin.version.clone()),
        }
    }

    /// The replaced version that stays readable after `old` was replaced by `new`: on Azure,
    /// a container with versioning gives every write a version id. GCS gives every write a
    /// new generation whether or not the bucket keeps the old one: it cannot be told here.
    pub(crate) fn kept_version(self, old: &Pin, new: &Pin) -> Option<String> {
        match (self, &old.version, &new.version) {
            (Service::Azure, Some(was), Some(now)) if was != now => Some(was.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(etag: &str, version: Option<&str>) -> Pin {
        Pin {
            etag: Some(etag.into()),
            version: version.map(str::to_string),
        }
    }

    #[test]
    fn each_service_pins_what_its_precondition_compares() {
        let read = pin("\"0x8DC\"", Some("1733100000000000"));
        let az = Service::Azure.update(&read);
        assert_eq!((az.e_tag.as_deref(), az.version), (Some("\"0x8DC\""), None));
        let gs = Service::Gcs.update(&read);
        assert_eq!(
            (gs.e_tag, gs.version.as_deref()),
            (None, Some("1733100000000000"))
        );
        assert_eq!(
            Service::Azure.read_pin(&read),
            (Some("\"0x8DC\"".into()), None)
        );
        assert_eq!(
            Service::Gcs.read_pin(&read),
            (None, Some("1733100000000000".into()))
        );
    }

    #[test]
    fn only_azure_version_ids_say_a_version_was_kept() {
        let (old, new) = (pin("a", Some("v1")), pin("b", Some("v2")));
        assert_eq!(Service::Azure.kept_version(&old, &new), Some("v1".into()));
        assert_eq!(
            Service::Azure.kept_version(&pin("a", None), &pin("b", None)),
            None
        );
        // A new generation says nothing of whether the bucket keeps the old one.
        assert_eq!(Service::Gcs.kept_version(&old, &new), None);
    }

    #[test]
    fn plain_http_needs_the_service_s_own_setting() {
        let env = |p: &[(&str, &str)]| -> Env {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = Service::Gcs
            .build("bkt", &env(&[("GOOGLE_BASE_URL", "http://127.0.0.1:1")]), 1)
            .unwrap_err();
        assert!(e.to_string().contains("GOOGLE_ALLOW_HTTP"), "{e}");
        let e = Service::Azure
            .build(
                "ctr",
                &env(&[
                    ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                    ("AZURE_STORAGE_ENDPOINT", "http://127.0.0.1:1"),
                ]),
                1,
            )
            .unwrap_err();
        assert!(e.to_string().contains("AZURE_ALLOW_HTTP"), "{e}");
    }
}
