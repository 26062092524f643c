//! Versioned schema migrations, recorded in `schema_migrations`, each applied in its own
//! transaction. To add one, put `NNNN_name.sql` in `src/store/migrations/` and a line below.

use sqlx::Row;

use super::{Backend, Result, Store, StoreError, now_ms};

/// (version, name, SQL) in the order they apply.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("migrations/0001_core.sql")),
    (2, "runs", include_str!("migrations/0002_runs.sql")),
    (
        3,
        "protected",
        include_str!("migrations/0003_protected.sql"),
    ),
];

/// Splits a migration into statements on `;` at line ends (the files keep one statement
/// per `;`-terminated block and no `;` inside strings).
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

pub(super) async fn run(store: &Store) -> Result<()> {
    let mut conn = store.pool.acquire().await?;
    // Replicas starting together on PostgreSQL take turns.
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock(7243391001)")
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_all(&mut conn).await;
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock(7243391001)")
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply_all(conn: &mut sqlx::AnyConnection) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let applied: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("version"))
        .collect::<std::result::Result<_, _>>()?;
    if let Some(newest) = applied.iter().max() {
        let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
        if *newest > known {
            return Err(StoreError::Invalid(format!(
                "the database has schema version {newest}, newer than this build knows ({known}); upgrade meltano-cloud"
            )));
        }
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for stmt in statements(sql) {
            sqlx::query(&stmt).execute(&mut *tx).await.map_err(|e| {
                StoreError::Invalid(format!("migration {version:04}_{name} failed: {e}"))
            })?;
        }
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(*version)
        .bind(*name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_statements() {
        let s = super::statements("-- c\nCREATE TABLE a (x BIGINT);\n\nCREATE INDEX i ON a (x);\n");
        assert_eq!(
            s,
            vec!["CREATE TABLE a (x BIGINT)", "CREATE INDEX i ON a (x)"]
        );
    }
}
