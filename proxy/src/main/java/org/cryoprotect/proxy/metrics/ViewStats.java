package org.cryoprotect.proxy.metrics;

/**
 * A refreshed materialized view at scrape time: seconds since any proxy instance last refreshed it
 * (since this one started, when never), and its configured interval.
 */
public record ViewStats(String view, double ageSeconds, double intervalSeconds) {}
