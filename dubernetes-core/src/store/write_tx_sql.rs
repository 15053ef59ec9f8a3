//! The checks of a write made inside its transaction, shared by both stores
//! and expanded by [`write_transactions!`] into `$store`'s own methods (see
//! [`sql_store!`](crate::store::sql::sql_store)): an apply's secret, host and
//! pod-limit checks with its write, a certificate's insert, a user
//! certificate's replace, the pods that use a secret.

/// The write transactions of `$store` on database `$db`.
macro_rules! write_transactions {
    ($store:ty, $db:ty) => {
        impl $store {
            /// [`Store::upsert_checked`] in one write transaction.
            async fn upsert_tx(
                &self,
                spec: &PodSpec,
                expected: Option<i64>,
                max_pods: u32,
            ) -> Result<(StoredPod, ApplyOutcome)> {
                let now = now_ms();
                let mut tx = self.write_tx().await?;
                // Generic and docker-registry secrets are checked in this
                // transaction, as TLS secrets are below: a secret deleted at
                // the same time waits for it or is seen, and a replaced one's
                // new version is what the pod records (so its replace rolls it).
                let mut rows = std::collections::BTreeMap::new();
                for name in crate::store::secret_refs(spec) {
                    let row: Option<(String, String, i64)> =
                        sqlx::query_as("SELECT kind, keys, version FROM data_secrets WHERE name = $1")
                            .bind(name)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some((kind, keys, version)) = row {
                        let kind = match kind.as_str() {
                            "generic" => dubernetes_api::SecretType::Generic,
                            "docker-registry" => dubernetes_api::SecretType::DockerRegistry,
                            other => return Err(Error::Internal(format!("unknown secret type {other:?} in the store"))),
                        };
                        let keys: Vec<String> = serde_json::from_str(&keys)
                            .map_err(|e| Error::Internal(format!("stored secret keys: {e}")))?;
                        rows.insert(name.to_string(), crate::store::SecretRow { kind, keys, version });
                    }
                }
                let versions = crate::store::check_secret_refs(spec, &rows)?;
                let refreshed;
                let spec = if versions == spec.secret_versions {
                    spec
                } else {
                    let mut s = spec.clone();
                    s.secret_versions = versions;
                    refreshed = s;
                    &refreshed
                };
                let json = encode_spec(spec)?;
                let current_row: Option<(i64, String)> = sqlx::query_as("SELECT generation, spec FROM pods WHERE name = $1")
                    .bind(&spec.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let current = current_row.as_ref().map(|(generation, _)| *generation);
                match (expected, current) {
                    (Some(_), None) => return Err(Error::NotFound(spec.name.clone())),
                    (Some(expected), Some(current)) if expected != current => {
                        return Err(Error::StaleGeneration {
                            pod: spec.name.clone(),
                            expected,
                            current,
                        });
                    }
                    _ => {}
                }
                if current.is_none() {
                    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pods")
                        .fetch_one(&mut *tx)
                        .await?;
                    if count >= i64::from(max_pods) {
                        return Err(Error::Limit {
                            field: "name".into(),
                            message: format!("this instance already has the maximum of {max_pods} pods; delete one first"),
                        });
                    }
                }
                if spec.host().is_some() || !spec.expose.is_empty() {
                    // Inside the write transaction (serialized), so no other
                    // pod can take the route or a listen port of `expose`
                    // between this check and the write. One read serves both.
                    let others: Vec<String> = sqlx::query_scalar("SELECT spec FROM pods WHERE name != $1")
                        .bind(&spec.name)
                        .fetch_all(&mut *tx)
                        .await?;
                    let others: Vec<PodSpec> = others
                        .iter()
                        .filter_map(|json| serde_json::from_str(json).ok())
                        .collect();
                    crate::store::route_clash(spec, &others)?;
                    crate::store::listen_clash(spec, &others)?;
                }
                // The TLS secret is checked in this transaction: a secret
                // deleted or replaced at the same time waits for it, or is seen.
                let hosts = spec.hosts();
                if let (Some(crate::spec::Tls::Secret(secret)), false) = (spec.tls(), hosts.is_empty()) {
                    let keeps_it = current_row
                        .as_ref()
                        .and_then(|(_, json)| serde_json::from_str::<PodSpec>(json).ok())
                        .is_some_and(|p| p.tls() == spec.tls() && p.hosts() == hosts);
                    let cert = Self::user_certificate_tx(&mut tx, secret).await?;
                    let cert = cert.as_ref().map(|(hosts, not_after)| (hosts.as_slice(), *not_after));
                    if let Some(message) = crate::certificate::refuse_use(secret, &hosts, cert, now / 1000, keeps_it) {
                        return Err(Error::Certificate {
                            field: "access.tls.secret".into(),
                            message,
                        });
                    }
                }
                let row = sqlx::query(
                    "INSERT INTO pods (name, spec, host, generation, created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $4)
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, host = excluded.host,
                         generation = pods.generation + 1, updated_at = excluded.updated_at
                     WHERE pods.spec != excluded.spec
                     RETURNING generation",
                )
                .bind(&spec.name)
                .bind(&json)
                .bind(crate::store::route_key(spec))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let outcome = match row {
                    None => ApplyOutcome::Unchanged,
                    Some(row) if row.try_get::<i64, _>("generation")? == 1 => ApplyOutcome::Created,
                    Some(_) => ApplyOutcome::Configured,
                };
                if outcome != ApplyOutcome::Unchanged {
                    record_revision(&mut tx, spec, &json, now, None).await?;
                    notify(&mut tx, "spec", &spec.name).await?;
                }
                tx.commit().await?;
                let stored = self
                    .get(&spec.name)
                    .await?
                    .ok_or_else(|| Error::NotFound(spec.name.clone()))?;
                Ok((stored, outcome))
            }

            /// Writes `cert` as a certificate of `kind` in `tx` (insert, or
            /// replace the one of that name): what `put_certificate` and
            /// `put_user_certificate` both write.
            async fn insert_certificate_tx(
                tx: &mut sqlx::Transaction<'static, $db>,
                cert: &StoredCertificate,
                kind: CertificateKind,
            ) -> Result<()> {
                let hosts = serde_json::to_string(&cert.hosts).map_err(|e| Error::Internal(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO certificates (name, kind, cert_pem, key_pem, hosts, issuer, not_before, not_after, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                     ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, cert_pem = excluded.cert_pem,
                       key_pem = excluded.key_pem, hosts = excluded.hosts, issuer = excluded.issuer,
                       not_before = excluded.not_before, not_after = excluded.not_after, updated_at = excluded.updated_at",
                )
                .bind(&cert.name)
                .bind(kind.as_str())
                .bind(&cert.cert_pem)
                .bind(&cert.key_pem)
                .bind(hosts)
                .bind(&cert.issuer)
                .bind(cert.not_before)
                .bind(cert.not_after)
                .bind(now_ms())
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// The hosts and end of validity of the user's secret `name`, read in `tx`.
            async fn user_certificate_tx(
                tx: &mut sqlx::Transaction<'static, $db>,
                name: &str,
            ) -> Result<Option<(Vec<String>, i64)>> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT hosts, not_after FROM certificates WHERE name = $1 AND kind = $2")
                        .bind(name)
                        .bind(CertificateKind::User.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                row.map(|(hosts, not_after)| {
                    let hosts: Vec<String> =
                        serde_json::from_str(&hosts).map_err(|e| Error::Internal(format!("stored hosts: {e}")))?;
                    Ok((hosts, not_after))
                })
                .transpose()
            }

            /// The pods (name, host) whose `access.tls` names the secret `name`, read in `tx`.
            async fn secret_users_tx(
                tx: &mut sqlx::Transaction<'static, $db>,
                name: &str,
            ) -> Result<Vec<(String, String)>> {
                let specs: Vec<String> = sqlx::query_scalar("SELECT spec FROM pods WHERE host IS NOT NULL ORDER BY name")
                    .fetch_all(&mut **tx)
                    .await?;
                let mut users = Vec::new();
                for json in specs {
                    let spec: PodSpec =
                        serde_json::from_str(&json).map_err(|e| Error::Store(crate::error::StoreError::decode(e)))?;
                    if let Some(crate::spec::Tls::Secret(secret)) = spec.tls()
                        && secret == name
                    {
                        users.extend(spec.hosts().into_iter().map(|host| (spec.name.clone(), host.to_string())));
                    }
                }
                Ok(users)
            }
        }
    };
}
pub(crate) use write_transactions;
