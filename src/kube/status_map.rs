//! The status ConfigMap, as Cluster Autoscaler keeps `cluster-autoscaler-status`
//! (`cluster-autoscaler/clusterstate/utils/status.go`: `WriteStatusConfigMap` updates the
//! map's `status` entry and a `…/last-updated` annotation, or creates the map when it is not
//! found). gpupool's is `gpupool-status` in its own namespace, with the readable table under
//! `status` and the same JSON as `/status` under `status.json`. Only the leader writes it, on
//! change and at most every `MIN_WRITE_INTERVAL_S` (`model::status::should_write`).
//!
//! One call per write: a merge patch of the named map (RBAC `patch` limited to it by
//! `resourceNames`), and `create` only when the patch finds none (404) — `create` cannot be
//! limited by name ("Using RBAC Authorization" → "Referring to resources").

use super::KubeError;
use crate::contract::{ANNOTATION_STATUS_UPDATED, STATUS_CONFIGMAP};
use crate::model::Timestamp;
use crate::model::status::{Status, Written, content_key, render, should_write};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

pub struct StatusMap {
    api: Api<ConfigMap>,
    last: Written,
}

impl StatusMap {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        StatusMap {
            api: Api::namespaced(client, namespace),
            last: Written::default(),
        }
    }

    /// Write `status` if it changed (or is due for a refresh). `Ok(true)` when written.
    pub async fn publish(&mut self, status: &Status, now: Timestamp) -> Result<bool, KubeError> {
        let content = content_key(status);
        if !should_write(&self.last, &content, now) {
            return Ok(false);
        }
        let json = serde_json::to_string_pretty(status).unwrap_or_default();
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": STATUS_CONFIGMAP,
                "labels": { "app.kubernetes.io/name": "gpupool" },
                "annotations": { ANNOTATION_STATUS_UPDATED: now.to_string() },
            },
            "data": {
                "status": format!("gpupool status at {now}:\n{}", render(status, now)),
                "status.json": json,
            },
        });
        match self
            .api
            .patch(
                STATUS_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let cm: ConfigMap = serde_json::from_value(body).map_err(|e| {
                    KubeError::api("building the status ConfigMap", kube::Error::SerdeError(e))
                })?;
                self.api
                    .create(&PostParams::default(), &cm)
                    .await
                    .map_err(|e| KubeError::api("creating ConfigMap gpupool-status", e))?;
            }
            Err(e) => return Err(KubeError::api("patching ConfigMap gpupool-status", e)),
        }
        self.last = Written {
            at: Some(now),
            content,
        };
        Ok(true)
    }
}
