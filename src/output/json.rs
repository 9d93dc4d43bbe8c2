//! `--output-json` records: one object per line with pwru's keys, order and omitempty rules
//! (zero numbers and empty strings are left out; `tuple` is present whenever tuples are on).

use serde::Serialize;

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}

/// The `time` value: a string for absolute time, a number for current/relative.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum JsonTime<'a> {
    Text(&'a str),
    Nanos(u64),
}

#[derive(Debug, Serialize)]
pub struct JsonTuple {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub saddr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub daddr: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub sport: u16,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub dport: u16,
    #[serde(skip_serializing_if = "is_zero_u8")]
    pub proto: u8,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub flags: String,
}

#[derive(Debug, Serialize)]
pub struct JsonEvent<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub skb: &'a str,
    /// The `--output-skb-shared-info` dump.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub skb_shared_info: &'a str,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub cpu: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub process: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub func: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub caller_func: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<JsonTime<'a>>,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub netns: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub netns_name: &'a str,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mark: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub iface: &'a str,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub proto: u16,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mtu: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub len: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cb: Option<[u32; 5]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuple: Option<JsonTuple>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub stack: &'a str,
    /// The `--output-skb` dump (pwru's key name).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub skb_metadata: &'a str,
}
