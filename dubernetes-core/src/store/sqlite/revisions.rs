//! Revisions in SQLite: the shared SQL of [`crate::store::revisions_sql`].

use sqlx::Row;

use crate::error::{Error, Result};
use crate::spec::PodSpec;
use crate::store::{MAX_REVISIONS, Revision};

crate::store::revisions_sql::revision_functions!(sqlx::Sqlite, sqlx::sqlite::SqliteRow);
