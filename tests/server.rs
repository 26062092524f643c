//! The control plane over HTTP: a real `meltano-cloud server` on 127.0.0.1, on SQLite and
//! on PostgreSQL (every test body runs on both), with real git repositories.

mod support;

#[path = "server/cases.rs"]
mod cases;

/// Runs each named async case `fn(Store)` once per store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::cases::$name(crate::support::Store::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::cases::$name(crate::support::Store::Postgres).await
                }
            )*
        }
    };
}

on_both_stores!(deploy_enable_snapshot);
