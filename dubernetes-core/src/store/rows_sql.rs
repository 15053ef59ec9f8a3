//! Rows of both stores decoded into the store's types, expanded by
//! [`row_decoders!`] for each database's row type (see
//! [`sql_store!`](crate::store::sql::sql_store)).

/// The decoders of rows of type `$row`: a pod (with its latest revision),
/// an event, a certificate, a data secret.
macro_rules! row_decoders {
    ($row:ty) => {
        fn data_secret_from_row(r: &$row) -> Result<crate::store::StoredSecret> {
            let keys: String = r.try_get("keys")?;
            let kind: String = r.try_get("kind")?;
            Ok(crate::store::StoredSecret {
                name: r.try_get("name")?,
                kind: match kind.as_str() {
                    "generic" => dubernetes_api::SecretType::Generic,
                    "docker-registry" => dubernetes_api::SecretType::DockerRegistry,
                    other => {
                        return Err(Error::Internal(format!(
                            "unknown secret type {other:?} in the store"
                        )))
                    }
                },
                keys: serde_json::from_str(&keys).map_err(|e| Error::Internal(format!("stored secret keys: {e}")))?,
                docker_server: r.try_get("docker_server")?,
                sealed: r.try_get("sealed")?,
                version: r.try_get("version")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        }

        fn certificate_from_row(r: &$row) -> Result<StoredCertificate> {
            let hosts: String = r.try_get("hosts")?;
            Ok(StoredCertificate {
                name: r.try_get("name")?,
                kind: CertificateKind::parse(&r.try_get::<String, _>("kind")?)?,
                cert_pem: r.try_get("cert_pem")?,
                key_pem: r.try_get("key_pem")?,
                hosts: serde_json::from_str(&hosts).map_err(|e| Error::Internal(format!("stored hosts: {e}")))?,
                issuer: r.try_get("issuer")?,
                not_before: r.try_get("not_before")?,
                not_after: r.try_get("not_after")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        }

        fn decode(row: &$row) -> Result<StoredPod> {
            let spec: String = row.try_get("spec")?;
            let spec: PodSpec =
                serde_json::from_str(&spec).map_err(|e| Error::Store(crate::error::StoreError::decode(e)))?;
            Ok(StoredPod {
                spec,
                generation: row.try_get("generation")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                rollout: RolloutState {
                    number: row.try_get::<Option<i64>, _>("rev_number")?.unwrap_or(0),
                    outcome: row
                        .try_get::<Option<String>, _>("rev_outcome")?
                        .map(crate::store::sqlite::parse_word)
                        .transpose()?,
                    reason: row.try_get("rev_reason")?,
                    message: row.try_get("rev_message")?,
                },
            })
        }

        fn event_from_row(r: &$row) -> Result<Event> {
            Ok(Event {
                id: r.try_get("id")?,
                pod: r.try_get("pod")?,
                at: r.try_get("at")?,
                kind: crate::store::sqlite::parse_word(r.try_get::<String, _>("kind")?)?,
                reason: r.try_get("reason")?,
                message: r.try_get("message")?,
            })
        }
    };
}
pub(crate) use row_decoders;
