//! Integration tests: the real `sup` binary against real daemons, each in
//! its own temporary `SUP_HOME`.

mod support;

mod alerts;
mod boot;
mod commands;
mod configs;
mod daemon;
mod dashboard;
mod durability;
mod examples;
mod hardening;
mod health;
mod instances;
mod logs;
mod monit;
mod node;
mod ownership;
mod persistence;
mod pm2;
mod pm2files;
mod processes;
mod readme;
mod realworld;
mod restarts;
mod run;
mod triggers;
mod usability;
mod users;
mod web;
