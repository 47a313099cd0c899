//! The state in a ConfigMap (Kubernetes mode): [`super::CONFIGMAP_NAME`] in gpupool's own
//! namespace, key [`super::CONFIGMAP_KEY`], written by the leader only (the controller saves
//! only in ticks it acts in, behind the Lease's fence).
//!
//! Calls: `get` of the ConfigMap by name; `create` the first time; `update` (a PUT carrying the
//! resourceVersion read, so a write racing another replica's fails with 409 instead of
//! overwriting it) afterwards. RBAC: `get`/`update` limited to this name by `resourceNames`;
//! `create` cannot be limited by name ("You cannot restrict create or deletecollection
//! requests by their resource name", Kubernetes docs, "Using RBAC Authorization").

use super::{CONFIGMAP_KEY, CONFIGMAP_NAME, SavedState, StateError, StateStore, decode, encode};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    namespace: String,
}

impl ConfigMapStore {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        ConfigMapStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }

    fn write_err(&self, e: kube::Error) -> StateError {
        StateError::Write {
            what: self.describe(),
            source: Box::new(e),
        }
    }
}

#[async_trait]
impl StateStore for ConfigMapStore {
    async fn load(&self) -> Result<Option<SavedState>, StateError> {
        let cm = self
            .api
            .get_opt(CONFIGMAP_NAME)
            .await
            .map_err(|e| StateError::Unavailable {
                what: self.describe(),
                source: Box::new(e),
            })?;
        let Some(text) = cm
            .and_then(|c| c.data)
            .and_then(|mut d| d.remove(CONFIGMAP_KEY))
        else {
            return Ok(None);
        };
        decode(text.as_bytes(), &self.describe()).map(Some)
    }

    async fn save(&self, state: &SavedState) -> Result<(), StateError> {
        // The encoding is JSON, hence UTF-8.
        let text = String::from_utf8(encode(state)).unwrap_or_default();
        let data = [(CONFIGMAP_KEY.to_owned(), text)].into_iter().collect();
        let current = self
            .api
            .get_opt(CONFIGMAP_NAME)
            .await
            .map_err(|e| self.write_err(e))?;
        match current {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(CONFIGMAP_NAME.to_owned()),
                        labels: Some(
                            [("app.kubernetes.io/name".to_owned(), "gpupool".to_owned())].into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                self.api
                    .create(&PostParams::default(), &cm)
                    .await
                    .map_err(|e| self.write_err(e))?;
            }
            Some(mut cm) => {
                cm.data = Some(data);
                self.api
                    .replace(CONFIGMAP_NAME, &PostParams::default(), &cm)
                    .await
                    .map_err(|e| self.write_err(e))?;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("ConfigMap {}/{CONFIGMAP_NAME}", self.namespace)
    }
}
