//! Rendering of objects for the client: plain JSON, `meta.k8s.io/v1` Tables (what kubectl get
//! asks for) or PartialObjectMetadata.

use crate::cache::CachedObject;
use crate::convert;
use crate::request::Rendering;
use bytes::Bytes;
use kubus_apimachinery::{table, ResourceInfo};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

pub struct Renderer {
    pub rendering: Rendering,
    pub info: &'static ResourceInfo,
    pub kind: String,
    pub api_version: String,
    pub include: IncludeObject,
    /// Watch tables carry column definitions only in their first event.
    columns_sent: bool,
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

impl Renderer {
    pub fn new(rendering: Rendering, info: &'static ResourceInfo, include: IncludeObject) -> Self {
        Renderer {
            rendering,
            info,
            kind: info.kind.to_string(),
            api_version: info.api_version(),
            include,
            columns_sent: false,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self.rendering {
            Rendering::Table => crate::request::TABLE_CONTENT_TYPE,
            Rendering::Metadata => "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            Rendering::Json => crate::request::JSON,
        }
    }

    fn row(&self, obj: &Value, now: SystemTime) -> Value {
        let cells = table::cells(self.info.group, self.info.resource, obj, now);
        let mut row = json!({"cells": cells});
        match self.include {
            IncludeObject::None => {}
            IncludeObject::Metadata => row["object"] = partial(obj),
            IncludeObject::Object => row["object"] = obj.clone(),
        }
        let conditions = table::row_conditions(self.info.group, self.info.resource, obj);
        if !conditions.is_empty() {
            row["conditions"] = Value::Array(conditions);
        }
        row
    }

    fn table(&self, objs: &[Value], meta: Value, with_columns: bool) -> Value {
        let now = SystemTime::now();
        let rows: Vec<Value> = objs.iter().map(|o| self.row(o, now)).collect();
        let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "rows": rows});
        if with_columns {
            t["columnDefinitions"] = Value::Array(table::column_definitions(self.info.group, self.info.resource));
        }
        t
    }

    /// One object (storage form) as the client asked for it.
    pub fn object(&self, obj: Value) -> Value {
        let obj = convert::to_version(self.info, obj);
        match self.rendering {
            Rendering::Json => obj,
            Rendering::Metadata => partial(&obj),
            Rendering::Table => {
                let rv = obj["metadata"]["resourceVersion"].clone();
                self.table(&[obj], json!({"resourceVersion": rv}), true)
            }
        }
    }

    /// Whether the client gets objects exactly in their storage form (plain JSON of a version
    /// stored as is), so that what the cache encoded can be sent unchanged.
    pub fn sends_stored_form(&self) -> bool {
        matches!(self.rendering, Rendering::Json) && convert::is_identity(self.info)
    }

    /// A watch event's object.
    pub fn watch_object(&mut self, obj: Value) -> Value {
        let obj = convert::to_version(self.info, obj);
        match self.rendering {
            Rendering::Json => obj,
            Rendering::Metadata => partial(&obj),
            Rendering::Table => {
                let rv = obj["metadata"]["resourceVersion"].clone();
                let first = !self.columns_sent;
                self.columns_sent = true;
                self.table(&[obj], json!({"resourceVersion": rv}), first)
            }
        }
    }

    /// A list page of cached objects, encoded: plain JSON lists are put together from the
    /// objects' stored encodings without decoding them.
    pub fn list_cached(
        &self,
        items: &[Arc<CachedObject>],
        revision: u64,
        cont: Option<String>,
        remaining: Option<usize>,
    ) -> Bytes {
        if !self.sends_stored_form() {
            let decoded = items.iter().map(|o| o.value()).collect();
            return Bytes::from(self.list(decoded, revision, cont, remaining).to_string());
        }
        let head = json!({"kind": self.info.list_kind(), "apiVersion": self.api_version, "metadata": list_meta(revision, cont, remaining)})
            .to_string();
        let mut out = Vec::with_capacity(head.len() + 16 + items.iter().map(|o| o.json().len() + 1).sum::<usize>());
        // `{...}` -> `{...,"items":[a,b]}`
        out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        out.extend_from_slice(br#","items":["#);
        for (i, o) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(o.json());
        }
        out.extend_from_slice(b"]}");
        Bytes::from(out)
    }

    /// A list page.
    pub fn list(&self, items: Vec<Value>, revision: u64, cont: Option<String>, remaining: Option<usize>) -> Value {
        let meta = list_meta(revision, cont, remaining);
        let items: Vec<Value> = items.into_iter().map(|o| convert::to_version(self.info, o)).collect();
        match self.rendering {
            Rendering::Json => json!({
                "kind": self.info.list_kind(), "apiVersion": self.api_version, "metadata": meta, "items": items,
            }),
            Rendering::Metadata => json!({
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "items": items.iter().map(partial).collect::<Vec<_>>(),
            }),
            Rendering::Table => self.table(&items, meta, true),
        }
    }
}

fn list_meta(revision: u64, cont: Option<String>, remaining: Option<usize>) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    meta
}
