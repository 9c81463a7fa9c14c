//! The namespaces' stores, opened on first use and shared by connections.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;
use store_core::{Error, Result, StoreOptions};
use tokio::sync::Mutex;

use super::frames::EventFrames;
use super::maintenance::{self, Maintenance};
use crate::backend::Durable;
use crate::backend::postgres::{self, PgOptions};
use crate::backend::sqlite::{self, SqliteOptions, Synchronous};

/// Where the server keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string, and the schema holding the tables.
    Postgres {
        /// The connection string, without the `schema` parameter.
        conn: String,
        /// The schema (`public` unless the URL says `?schema=NAME`).
        schema: String,
    },
}

impl Database {
    /// The `--db` URL that names this database: `sqlite://PATH`, or
    /// `postgres://…?schema=NAME`. A PostgreSQL connection given as libpq
    /// `key=value` pairs is written as a URL: host, port, user, password
    /// and dbname in its place, any other pair (say `sslmode`) as a query
    /// parameter. Quoted values are not supported.
    pub fn url(&self) -> String {
        let (conn, schema) = match self {
            Database::Sqlite(path) => return format!("sqlite://{}", path.display()),
            Database::Postgres { conn, schema } => (conn, schema),
        };
        if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
            let sep = if conn.contains('?') { '&' } else { '?' };
            return format!("{conn}{sep}schema={schema}");
        }
        // What would end the part of the URL it stands in is percent-encoded
        // (a socket directory in the host, an `&` in a parameter, say).
        let escape = |v: &str| {
            v.replace('%', "%25")
                .replace('/', "%2F")
                .replace('@', "%40")
                .replace(':', "%3A")
                .replace('?', "%3F")
                .replace('#', "%23")
                .replace('&', "%26")
        };
        let (mut host, mut port, mut user) =
            ("localhost".to_owned(), "5432".to_owned(), "postgres".to_owned());
        let (mut password, mut dbname, mut params) = (None, None, Vec::new());
        for pair in conn.split_whitespace() {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            match k {
                "host" => host = v.to_owned(),
                "port" => port = v.to_owned(),
                "user" => user = v.to_owned(),
                "password" => password = Some(v),
                "dbname" => dbname = Some(v.to_owned()),
                _ => params.push(format!("{k}={}", escape(v))),
            }
        }
        let dbname = dbname.unwrap_or_else(|| user.clone());
        let login = match password {
            Some(p) => format!("{}:{}", escape(&user), escape(p)),
            None => escape(&user),
        };
        params.push(format!("schema={schema}"));
        format!(
            "postgres://{login}@{}:{port}/{}?{}",
            escape(&host),
            escape(&dbname),
            params.join("&")
        )
    }
}

impl FromStr for Database {
    type Err = String;

    /// `sqlite://PATH` (or a bare path), or `postgres://…` / `postgresql://…`
    /// with an optional `schema=NAME` query parameter.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://zestor.db".into());
            }
            Ok(Database::Sqlite(path.into()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let (base, query) = s.split_once('?').unwrap_or((s, ""));
            let mut schema = "public".to_owned();
            let rest: Vec<&str> = query
                .split('&')
                .filter(|p| match p.strip_prefix("schema=") {
                    Some(name) => {
                        schema = name.to_owned();
                        false
                    }
                    None => !p.is_empty(),
                })
                .collect();
            if schema.is_empty() {
                return Err("schema= needs a name".into());
            }
            let conn = if rest.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", rest.join("&"))
            };
            Ok(Database::Postgres { conn, schema })
        } else if s.contains("://") {
            Err(format!(
                "unsupported database {s:?}: use sqlite://PATH or postgres://…"
            ))
        } else if s.is_empty() {
            Err("empty database".into())
        } else {
            Ok(Database::Sqlite(s.into()))
        }
    }
}

/// Opens and keeps one store per namespace.
pub struct Stores {
    database: Database,
    synchronous: Synchronous,
    options: StoreOptions<Value>,
    open: Mutex<HashMap<String, Namespace>>,
    maintenance: Maintenance,
    /// The database's maintenance loop, once a namespace has opened.
    maintaining: parking_lot::Mutex<Option<maintenance::Running>>,
}

/// An open namespace: its store, and the encodings of its events shared by
/// the connections that send them.
type Namespace = (Durable<Value>, Arc<EventFrames>);

impl Stores {
    /// Stores of `database`, each with `options` (schemas, retention), and
    /// the database's maintenance with [`Maintenance::default`].
    #[must_use]
    pub fn new(database: Database, synchronous: Synchronous, options: StoreOptions<Value>) -> Self {
        Stores {
            database,
            synchronous,
            options,
            open: Mutex::new(HashMap::new()),
            maintenance: Maintenance::default(),
            maintaining: parking_lot::Mutex::new(None),
        }
    }

    /// Maintains the database as `maintenance` says: how long the answers
    /// of op ids are kept, how often a round runs.
    #[must_use]
    pub fn maintenance(mut self, maintenance: Maintenance) -> Self {
        self.maintenance = maintenance;
        self
    }

    /// The JSON Schemas sent to clients in `welcome`.
    #[must_use]
    pub fn schemas(&self) -> BTreeMap<String, Value> {
        self.options
            .schemas()
            .iter()
            .map(|(k, s)| (k.clone(), s.source().clone()))
            .collect()
    }

    /// The store of `namespace`, opened on first use.
    pub async fn get(&self, namespace: &str) -> Result<Durable<Value>> {
        Ok(self.open(namespace).await?.0)
    }

    /// The store of `namespace`, opened on first use, and the encodings of
    /// its events shared by the connections that send them.
    pub(crate) async fn open(&self, namespace: &str) -> Result<Namespace> {
        let mut open = self.open.lock().await;
        if let Some((store, frames)) = open.get(namespace) {
            return Ok((store.clone(), Arc::clone(frames)));
        }
        let options = self.options.clone();
        let store = match &self.database {
            Database::Sqlite(path) => {
                let opts = SqliteOptions::new(path, namespace)
                    .synchronous(self.synchronous)
                    .op_ids_ttl(self.maintenance.op_ids_ttl);
                tokio::task::spawn_blocking(move || sqlite::open(opts, options))
                    .await
                    .map_err(|e| Error::Storage(e.to_string().into()))??
            }
            Database::Postgres { conn, schema } => {
                let opts = PgOptions::new(conn.as_str(), namespace).schema(schema.as_str());
                postgres::open(opts, options).await?
            }
        };
        let frames = Arc::new(EventFrames::new());
        open.insert(namespace.to_owned(), (store.clone(), Arc::clone(&frames)));
        // Started once the database is known to open and be migrated.
        let mut maintaining = self.maintaining.lock();
        if maintaining.is_none() {
            match maintenance::start(&self.database, self.maintenance) {
                Ok(running) => *maintaining = Some(running),
                Err(e) => tracing::warn!(error = %e, "cannot start the database's maintenance"),
            }
        }
        Ok((store, frames))
    }

    /// Closes every open store, and stops the database's maintenance.
    pub async fn close_all(&self) {
        self.maintaining.lock().take();
        for (_, (store, _)) in self.open.lock().await.drain() {
            store.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            "sqlite://data/z.db".parse(),
            Ok(Database::Sqlite("data/z.db".into()))
        );
        assert_eq!("z.db".parse(), Ok(Database::Sqlite("z.db".into())));
        assert_eq!(
            "postgres://u@h/db".parse(),
            Ok(Database::Postgres {
                conn: "postgres://u@h/db".into(),
                schema: "public".into()
            })
        );
        assert_eq!(
            "postgres://u@h/db?sslmode=disable&schema=app".parse(),
            Ok(Database::Postgres {
                conn: "postgres://u@h/db?sslmode=disable".into(),
                schema: "app".into()
            })
        );
        assert!(
            "mysql://x"
                .parse::<Database>()
                .unwrap_err()
                .contains("unsupported")
        );
        assert!("sqlite://".parse::<Database>().is_err());
        // `url()` names the same database, and converts libpq pairs.
        for url in [
            "sqlite://data/z.db",
            "postgres://u@h/db?schema=public",
            "postgres://u@h/db?sslmode=disable&schema=app",
        ] {
            assert_eq!(url.parse::<Database>().unwrap().url(), url);
        }
        let pairs = Database::Postgres {
            conn: "host=127.0.0.1 port=5433 user=zestor dbname=test".into(),
            schema: "s1".into(),
        };
        assert_eq!(pairs.url(), "postgres://zestor@127.0.0.1:5433/test?schema=s1");
        // A password and the other pairs are kept, and the URL parses back.
        let full = Database::Postgres {
            conn: "host=/run/pg user=z password=p@ss:1 dbname=d sslmode=disable".into(),
            schema: "s2".into(),
        };
        let url = full.url();
        assert_eq!(
            url,
            "postgres://z:p%40ss%3A1@%2Frun%2Fpg:5432/d?sslmode=disable&schema=s2"
        );
        assert!(url.parse::<Database>().is_ok(), "{url}");
        // The database name and the other pairs' values are escaped too: a
        // `?` or `&` in them would end their part of the URL.
        let odd = Database::Postgres {
            conn: "host=h dbname=a?b#c application_name=x&y".into(),
            schema: "s3".into(),
        };
        let url = odd.url();
        assert_eq!(
            url,
            "postgres://postgres@h:5432/a%3Fb%23c?application_name=x%26y&schema=s3"
        );
        match url.parse::<Database>() {
            Ok(Database::Postgres { schema, .. }) => assert_eq!(schema, "s3", "{url}"),
            other => panic!("{url} parsed as {other:?}"),
        }
    }
}
