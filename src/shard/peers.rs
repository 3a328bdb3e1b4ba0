//! The relay's [`Sessions`] view of a shard: its own connections and its links to the
//! other shards, told apart by session key.

use super::link::Links;
use super::Table;
use crate::relay::{SessionKey, Sessions, Topology};
use crate::session::Frame;
use crate::wire::{ErrorCode, Fetch, Subscribe, TrackInfo};

/// Connections and links, borrowed for one phase of the loop.
pub struct Peers<'a> {
    table: &'a mut Table,
    links: &'a mut Links,
}

impl<'a> Peers<'a> {
    pub fn new(table: &'a mut Table, links: &'a mut Links) -> Self {
        Self { table, links }
    }

    pub fn links(&mut self) -> &mut Links {
        self.links
    }
}

impl Sessions for Peers<'_> {
    fn root(&self, s: SessionKey) -> String {
        if Topology::is_link(s) {
            return String::new();
        }
        self.table.root(s)
    }
    fn left_abruptly(&self, s: SessionKey) -> bool {
        !Topology::is_link(s) && self.table.left_abruptly(s)
    }
    fn request_announces(&mut self, s: SessionKey, prefix: &str) -> Option<u64> {
        if Topology::is_link(s) {
            return self.links.request_announces(s);
        }
        self.table.request_announces(s, prefix)
    }
    fn reply_announces(&mut self, s: SessionKey, stream: u64, initial: &[(&str, &[u64])]) {
        if Topology::is_link(s) {
            return self.links.reply_announces(s, stream, initial);
        }
        self.table.reply_announces(s, stream, initial)
    }
    fn announce(&mut self, s: SessionKey, stream: u64, b: &str, hops: &[u64], active: bool) {
        if Topology::is_link(s) {
            return self.links.announce(s, stream, b, hops, active);
        }
        self.table.announce(s, stream, b, hops, active)
    }
    fn reannounce(&mut self, s: SessionKey, stream: u64, b: &str, old: &[u64], new: &[u64]) {
        if Topology::is_link(s) {
            // The shard across takes an announcement of a path its link holds as the
            // route's new chain.
            return self.links.announce(s, stream, b, new, true);
        }
        self.table.reannounce(s, stream, b, old, new)
    }
    fn subscribe(&mut self, s: SessionKey, request: &Subscribe, token: usize) -> Option<u64> {
        if Topology::is_link(s) {
            return self.links.subscribe(s, request, token);
        }
        self.table.subscribe(s, request, token)
    }
    fn unsubscribe(&mut self, s: SessionKey, stream: u64) {
        if Topology::is_link(s) {
            return self.links.unsubscribe(s, stream);
        }
        self.table.unsubscribe(s, stream)
    }
    fn request_track(&mut self, s: SessionKey, b: &str, t: &str, token: usize) -> Option<u64> {
        if Topology::is_link(s) {
            return self.links.request_track(s, b, t, token);
        }
        self.table.request_track(s, b, t, token)
    }
    fn reply_track(&mut self, s: SessionKey, stream: u64, info: &TrackInfo) {
        if Topology::is_link(s) {
            return self.links.reply_track(s, stream, info);
        }
        self.table.reply_track(s, stream, info)
    }
    fn fetch(&mut self, s: SessionKey, request: &Fetch, token: usize) -> Option<u64> {
        if Topology::is_link(s) {
            return self.links.fetch(s, request, token);
        }
        self.table.fetch(s, request, token)
    }
    fn reply_fetch(&mut self, s: SessionKey, stream: u64, frames: &[Frame]) {
        if Topology::is_link(s) {
            return self.links.reply_fetch(s, stream, frames);
        }
        self.table.reply_fetch(s, stream, frames)
    }
    fn reject(&mut self, s: SessionKey, stream: u64, code: ErrorCode) {
        if Topology::is_link(s) {
            return self.links.reject(s, stream, code);
        }
        self.table.reject(s, stream, code)
    }
    fn subscribe_ok(&mut self, s: SessionKey, stream: u64, priority: u8) {
        if Topology::is_link(s) {
            return self.links.subscribe_ok(s, stream);
        }
        self.table.subscribe_ok(s, stream, priority)
    }
    fn subscribe_start(&mut self, s: SessionKey, stream: u64, group: u64) {
        if Topology::is_link(s) {
            return self.links.subscribe_start(s, stream, group);
        }
        self.table.subscribe_start(s, stream, group)
    }
    fn subscribe_end(&mut self, s: SessionKey, stream: u64, group: u64) {
        if Topology::is_link(s) {
            return self.links.subscribe_end(s, stream, group);
        }
        self.table.subscribe_end(s, stream, group)
    }
    fn end_subscription(&mut self, s: SessionKey, stream: u64, error: Option<u64>) {
        if Topology::is_link(s) {
            return self.links.end_subscription(s, stream, error);
        }
        self.table.end_subscription(s, stream, error)
    }
    fn open_group(&mut self, s: SessionKey, stream: u64, sequence: u64) -> Option<u64> {
        if Topology::is_link(s) {
            return self.links.open_group(s, stream, sequence);
        }
        self.table.open_group(s, stream, sequence)
    }
    fn send_frame(&mut self, s: SessionKey, group: u64, frame: &Frame) {
        if Topology::is_link(s) {
            return self.links.send_frame(s, group, frame);
        }
        self.table.send_frame(s, group, frame)
    }
    fn finish_group(&mut self, s: SessionKey, group: u64) {
        if Topology::is_link(s) {
            return self.links.end_group(s, group, None);
        }
        self.table.finish_group(s, group)
    }
    fn reset_group(&mut self, s: SessionKey, group: u64, code: u64) {
        if Topology::is_link(s) {
            return self.links.end_group(s, group, Some(code));
        }
        self.table.reset_group(s, group, code)
    }
    fn queued_bytes(&self, s: SessionKey) -> usize {
        if Topology::is_link(s) {
            return self.links.queued_bytes(s);
        }
        self.table.queued_bytes(s)
    }
}
