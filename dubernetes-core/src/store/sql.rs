//! The SQL both stores speak: pods, revisions' pointers, events and
//! ownership, written once and expanded by [`sql_store!`] for SQLite and
//! PostgreSQL (their row and transaction types differ, their queries do not:
//! `$n` placeholders, `ON CONFLICT`, `RETURNING`). What differs stays in each
//! store's module: how a write transaction begins (`write_tx`: SQLite's
//! `BEGIN IMMEDIATE`, PostgreSQL's advisory transaction lock) and what a write
//! tells the other servers (`notify` and `certificate_changed`: nothing for
//! SQLite, a `NOTIFY` for PostgreSQL). The checks made inside a write's
//! transaction are in `write_tx_sql.rs`, the row decoders in `rows_sql.rs`;
//! [`sql_store!`] expands both.

/// A pod joined with its latest revision.
macro_rules! pod_select {
    () => {
        "SELECT p.spec, p.generation, p.created_at, p.updated_at,
        r.number AS rev_number, r.outcome AS rev_outcome, r.reason AS rev_reason, r.message AS rev_message
    FROM pods p LEFT JOIN revisions r
        ON r.pod = p.name AND r.number = (SELECT MAX(number) FROM revisions WHERE pod = p.name)"
    };
}
pub(crate) use pod_select;

/// Implements [`Store`](crate::store::Store) for `$store` on database `$db`
/// with rows `$row`, plus the items in braces (backup, close, ...). The
/// module must have `self.pool`, `self.write_tx()`, `notify(tx, what, pod)`
/// and `certificate_changed(pool, name)` (what a certificate write tells the
/// other servers).
macro_rules! sql_store {
    ($store:ty, $db:ty, $row:ty, { $($extra:tt)* }) => {
        crate::store::write_tx_sql::write_transactions!($store, $db);

        #[async_trait::async_trait]
        impl Store for $store {
            async fn upsert_checked(
                &self,
                spec: &PodSpec,
                expected: Option<i64>,
                max_pods: u32,
            ) -> Result<(StoredPod, ApplyOutcome)> {
                self.upsert_tx(spec, expected, max_pods).await.map_err(|e| match e {
                    Error::Store(s) if s.sqlx().and_then(|e| e.as_database_error()).is_some_and(|d| d.is_unique_violation()) => Error::HostTaken {
                        host: spec.host().unwrap_or_default().to_string(),
                        path: spec.route_path().to_string(),
                        owner: None,
                    },
                    other => other,
                })
            }

            async fn revisions(&self, pod: &str) -> Result<Vec<Revision>> {
                let rows = sqlx::query(
                    "SELECT number, hash, spec, created_at, outcome, reason, message, finished_at
                     FROM revisions WHERE pod = $1 ORDER BY number",
                )
                .bind(pod)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(decode_revision).collect()
            }

            async fn complete_revision(&self, pod: &str, number: i64) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query(
                    "UPDATE revisions SET outcome = 'complete', finished_at = $3
                     WHERE pod = $1 AND number = $2 AND outcome = 'progressing'",
                )
                .bind(pod)
                .bind(number)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() > 0 {
                    notify(&mut tx, "event", pod).await?;
                }
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn note_revision(
                &self,
                pod: &str,
                number: i64,
                outcome: RolloutOutcome,
                reason: &str,
                message: &str,
            ) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                let noted = note_revision(&mut tx, pod, number, outcome.as_str(), reason, message).await?;
                if noted {
                    notify(&mut tx, "event", pod).await?;
                }
                tx.commit().await?;
                Ok(noted)
            }

            async fn fail_and_roll_back(
                &self,
                pod: &str,
                failed: i64,
                reason: &str,
                message: &str,
            ) -> Result<Option<Revision>> {
                let message = cut_message(message);
                let message = message.as_ref();
                let now = now_ms();
                let mut tx = self.write_tx().await?;
                let marked = sqlx::query(
                    "UPDATE revisions SET outcome = 'failed', reason = $3, message = $4, finished_at = $5
                     WHERE pod = $1 AND number = $2 AND outcome = 'progressing'",
                )
                .bind(pod)
                .bind(failed)
                .bind(reason)
                .bind(message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if marked.rows_affected() == 0 {
                    return Ok(None);
                }
                notify(&mut tx, "event", pod).await?;
                let failed_hash: Option<String> =
                    sqlx::query_scalar("SELECT hash FROM revisions WHERE pod = $1 AND number = $2")
                        .bind(pod)
                        .bind(failed)
                        .fetch_optional(&mut *tx)
                        .await?;
                let good = sqlx::query(
                    "SELECT number, hash, spec, created_at, outcome, reason, message, finished_at FROM revisions
                     WHERE pod = $1 AND outcome = 'complete' AND hash != $2 ORDER BY number DESC LIMIT 1",
                )
                .bind(pod)
                .bind(failed_hash.unwrap_or_default())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(good) = good.as_ref().map(decode_revision).transpose()? else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let current: Option<String> = sqlx::query_scalar("SELECT spec FROM pods WHERE name = $1")
                    .bind(pod)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(current) = current else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let current: PodSpec =
                    serde_json::from_str(&current).map_err(|e| Error::Store(crate::error::StoreError::decode(e)))?;
                let rolled = current.with_template_of(&good.spec);
                let json = serde_json::to_string(&rolled).map_err(|e| Error::Internal(format!("cannot encode spec: {e}")))?;
                sqlx::query("UPDATE pods SET spec = $2, generation = generation + 1, updated_at = $3 WHERE name = $1")
                    .bind(pod)
                    .bind(&json)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let note = format!("automatic rollback to revision {}: {reason}: {message}", good.number);
                record_revision(&mut tx, &rolled, &json, now, Some(("Rollback", &note))).await?;
                notify(&mut tx, "spec", pod).await?;
                tx.commit().await?;
                Ok(Some(good))
            }

            async fn get(&self, name: &str) -> Result<Option<StoredPod>> {
                let row = sqlx::query(concat!($crate::store::sql::pod_select!(), " WHERE p.name = $1"))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| decode(&r)).transpose()
            }

            async fn list(&self) -> Result<Vec<StoredPod>> {
                let rows = sqlx::query(concat!($crate::store::sql::pod_select!(), " ORDER BY p.name"))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(decode).collect()
            }

            async fn delete_checked(&self, name: &str, expected: Option<i64>) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                if let Some(expected) = expected {
                    let current: Option<i64> = sqlx::query_scalar("SELECT generation FROM pods WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                    match current {
                        None => return Ok(false),
                        Some(current) if current != expected => {
                            return Err(Error::StaleGeneration {
                                pod: name.to_string(),
                                expected,
                                current,
                            });
                        }
                        Some(_) => {}
                    }
                }
                let done = sqlx::query("DELETE FROM pods WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM revisions WHERE pod = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() > 0 {
                    notify(&mut tx, "spec", name).await?;
                }
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn record_event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()> {
                let message = cut_message(message);
                let mut tx = self.pool.begin().await?;
                let id: i64 =
                    sqlx::query("INSERT INTO events (pod, at, kind, reason, message) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                        .bind(pod)
                        .bind(now_ms())
                        .bind(kind)
                        .bind(reason)
                        .bind(message.as_ref())
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("id")?;
                notify(&mut tx, "event", pod).await?;
                tx.commit().await?;
                if id % 100 == 0 {
                    sqlx::query("DELETE FROM events WHERE id <= $1")
                        .bind(id - MAX_EVENTS)
                        .execute(&self.pool)
                        .await?;
                }
                Ok(())
            }

            async fn events(&self, pod: Option<&str>, limit: i64) -> Result<Vec<Event>> {
                let rows = sqlx::query(
                    "SELECT id, pod, at, kind, reason, message FROM
                       (SELECT * FROM events WHERE CAST($1 AS TEXT) IS NULL OR pod = $1 ORDER BY id DESC LIMIT $2) AS newest
                     ORDER BY id",
                )
                .bind(pod)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(event_from_row).collect()
            }

            async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>> {
                let rows =
                    sqlx::query("SELECT id, pod, at, kind, reason, message FROM events WHERE id > $1 ORDER BY id LIMIT $2")
                        .bind(after)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter().map(event_from_row).collect()
            }

            async fn last_event_id(&self) -> Result<i64> {
                let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(id.unwrap_or(0))
            }

            async fn ownership_facts(&self) -> Result<OwnershipFacts> {
                let id: Option<String> = sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'store_id'")
                    .fetch_optional(&self.pool)
                    .await?;
                let pods: Vec<String> = sqlx::query_scalar("SELECT name FROM pods")
                    .fetch_all(&self.pool)
                    .await?;
                let rows = sqlx::query("SELECT id, pod, held FROM adopted_containers")
                    .fetch_all(&self.pool)
                    .await?;
                let adopted = rows
                    .iter()
                    .map(|r| Ok((r.try_get("id")?, r.try_get("pod")?, r.try_get::<i64, _>("held")? != 0)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok(OwnershipFacts {
                    id,
                    pods: pods.into_iter().collect(),
                    adopted,
                })
            }

            async fn record_ownership(
                &self,
                store_id: &str,
                data_dir: &str,
                adoptions: &[Adoption],
                existing: &HashSet<String>,
            ) -> Result<()> {
                let now = now_ms();
                let mut tx = self.write_tx().await?;
                sqlx::query("INSERT INTO store_meta (key, value) VALUES ('store_id', $1) ON CONFLICT (key) DO NOTHING")
                    .bind(store_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO store_meta (key, value) VALUES ('data_dir', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(data_dir)
                .execute(&mut *tx)
                .await?;
                let known: Vec<String> = sqlx::query_scalar("SELECT id FROM adopted_containers")
                    .fetch_all(&mut *tx)
                    .await?;
                for gone in known.iter().filter(|id| !existing.contains(*id)) {
                    sqlx::query("DELETE FROM adopted_containers WHERE id = $1")
                        .bind(gone)
                        .execute(&mut *tx)
                        .await?;
                }
                for a in adoptions {
                    sqlx::query(
                        "INSERT INTO adopted_containers (id, pod, previous_store, held, adopted_at) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (id) DO UPDATE SET held = excluded.held",
                    )
                    .bind(&a.id)
                    .bind(&a.pod)
                    .bind(&a.previous_store)
                    .bind(i64::from(a.held))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn release_held(&self, pod: &str) -> Result<()> {
                sqlx::query("UPDATE adopted_containers SET held = 0 WHERE pod = $1 AND held = 1")
                    .bind(pod)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn put_certificate(&self, cert: &StoredCertificate) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                Self::insert_certificate_tx(&mut tx, cert, cert.kind).await?;
                tx.commit().await?;
                certificate_changed(&self.pool, &cert.name).await
            }

            async fn put_user_certificate(&self, cert: &StoredCertificate, replace: bool) -> Result<Vec<String>> {
                let mut tx = self.write_tx().await?;
                let data: Option<String> = sqlx::query_scalar("SELECT name FROM data_secrets WHERE name = $1")
                    .bind(&cert.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if data.is_some() {
                    return Err(Error::SecretTaken(cert.name.clone()));
                }
                let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM certificates WHERE name = $1")
                    .bind(&cert.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if kind.as_deref() == Some(CertificateKind::User.as_str()) && !replace {
                    return Err(Error::SecretExists(cert.name.clone()));
                }
                let users = Self::secret_users_tx(&mut tx, &cert.name).await?;
                if let Some(message) = crate::certificate::refuse_replace(&cert.hosts, &users) {
                    return Err(Error::Certificate {
                        field: "cert".into(),
                        message,
                    });
                }
                Self::insert_certificate_tx(&mut tx, cert, CertificateKind::User).await?;
                tx.commit().await?;
                certificate_changed(&self.pool, &cert.name).await?;
                Ok(users.into_iter().map(|(pod, _)| pod).collect())
            }

            async fn delete_user_certificate(&self, name: &str) -> Result<()> {
                let mut tx = self.write_tx().await?;
                let users = Self::secret_users_tx(&mut tx, name).await?;
                if !users.is_empty() {
                    return Err(Error::SecretInUse {
                        name: name.to_string(),
                        pods: users.into_iter().map(|(pod, _)| pod).collect(),
                    });
                }
                let done = sqlx::query("DELETE FROM certificates WHERE name = $1 AND kind = $2")
                    .bind(name)
                    .bind(CertificateKind::User.as_str())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(Error::SecretNotFound(name.to_string()));
                }
                tx.commit().await?;
                certificate_changed(&self.pool, name).await
            }

            async fn certificate(&self, name: &str) -> Result<Option<StoredCertificate>> {
                let row = sqlx::query("SELECT * FROM certificates WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(certificate_from_row).transpose()
            }

            async fn certificates(&self) -> Result<Vec<StoredCertificate>> {
                let rows = sqlx::query("SELECT * FROM certificates ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(certificate_from_row).collect()
            }

            async fn put_data_secret(
                &self,
                secret: &crate::store::StoredSecret,
                replace: bool,
            ) -> Result<crate::store::StoredSecret> {
                let now = now_ms();
                let keys = serde_json::to_string(&secret.keys).map_err(|e| Error::Internal(e.to_string()))?;
                let mut tx = self.write_tx().await?;
                let tls: Option<String> = sqlx::query_scalar("SELECT name FROM certificates WHERE name = $1")
                    .bind(&secret.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let existing: Option<(String, i64)> = sqlx::query("SELECT kind, version FROM data_secrets WHERE name = $1")
                    .bind(&secret.name)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| Ok::<_, sqlx::Error>((r.try_get("kind")?, r.try_get("version")?)))
                    .transpose()?;
                let same_kind = existing.as_ref().is_some_and(|(k, _)| k == secret.kind.as_str());
                if tls.is_some() || (existing.is_some() && !(replace && same_kind)) {
                    return Err(Error::SecretTaken(secret.name.clone()));
                }
                // Never a version seen before, even after a delete and re-create.
                let version = existing.map_or(now, |(_, v)| now.max(v + 1));
                sqlx::query(
                    "INSERT INTO data_secrets (name, kind, keys, docker_server, sealed, version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                     ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, keys = excluded.keys,
                       docker_server = excluded.docker_server, sealed = excluded.sealed,
                       version = excluded.version, updated_at = excluded.updated_at",
                )
                .bind(&secret.name)
                .bind(secret.kind.as_str())
                .bind(keys)
                .bind(&secret.docker_server)
                .bind(&secret.sealed)
                .bind(version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query("SELECT * FROM data_secrets WHERE name = $1")
                    .bind(&secret.name)
                    .fetch_one(&mut *tx)
                    .await?;
                let stored = data_secret_from_row(&row)?;
                tx.commit().await?;
                Ok(stored)
            }

            async fn data_secret(&self, name: &str) -> Result<Option<crate::store::StoredSecret>> {
                let row = sqlx::query("SELECT * FROM data_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(data_secret_from_row).transpose()
            }

            async fn data_secrets(&self) -> Result<Vec<crate::store::StoredSecret>> {
                let rows = sqlx::query("SELECT * FROM data_secrets ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(data_secret_from_row).collect()
            }

            async fn delete_data_secret(&self, name: &str) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                let specs: Vec<String> = sqlx::query_scalar("SELECT spec FROM pods ORDER BY name")
                    .fetch_all(&mut *tx)
                    .await?;
                let mut users = Vec::new();
                for spec in specs {
                    let spec: PodSpec =
                        serde_json::from_str(&spec).map_err(|e| Error::Store(crate::error::StoreError::decode(e)))?;
                    if spec.uses_secret(name) {
                        users.push(spec.name);
                    }
                }
                if !users.is_empty() {
                    return Err(Error::SecretUsed {
                        name: name.to_string(),
                        pods: users,
                    });
                }
                let done = sqlx::query("DELETE FROM data_secrets WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn acme_account(&self, directory: &str) -> Result<Option<String>> {
                Ok(
                    sqlx::query_scalar("SELECT credentials FROM acme_accounts WHERE directory = $1")
                        .bind(directory)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn put_acme_account(&self, directory: &str, credentials: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO acme_accounts (directory, credentials, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (directory) DO UPDATE SET credentials = excluded.credentials",
                )
                .bind(directory)
                .bind(credentials)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            $($extra)*
        }

        crate::store::rows_sql::row_decoders!($row);
    };
}
pub(crate) use sql_store;
