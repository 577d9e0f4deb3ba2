package org.cryoprotect.proxy.frontend;

import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.cryoprotect.proxy.sql.SqlScan;

/**
 * A client's session settings in transaction mode: read from its startup packet, captured from the
 * server after a transaction that may have changed them, and the SQL that puts them on a server
 * connection that has another client's. One per client session, confined to its event loop.
 */
final class SessionSettings {
  /** Startup parameters that are not session settings. */
  private static final List<String> NOT_SETTINGS =
      List.of("user", "database", "replication", "options");

  /**
   * What the session parameters of a server connection are after the client's transaction, and
   * which state that cannot move to another connection it holds now (rows named {@link #PIN}, one
   * per {@link SqlScan.Pin}). Run after units that may have changed either, including opaque ones
   * (DO, CALL, EXECUTE, SELECT INTO), whose effects no look at the SQL text can see.
   */
  static final String SNAPSHOT_SQL =
      "SELECT name, setting FROM pg_catalog.pg_settings"
          + " WHERE source = 'session' AND name NOT IN ('role', 'session_authorization')"
          + " UNION ALL SELECT 'role', pg_catalog.current_setting('role')"
          + " WHERE pg_catalog.current_setting('role') <> 'none'"
          + " UNION ALL SELECT ' pin', 'TEMP_TABLE' WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class"
          + " WHERE relnamespace = pg_catalog.pg_my_temp_schema())"
          + " UNION ALL SELECT ' pin', 'ADVISORY_LOCK' WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_locks"
          + " WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())"
          + " UNION ALL SELECT ' pin', 'LISTEN' WHERE EXISTS"
          + " (SELECT 1 FROM pg_catalog.pg_listening_channels())"
          + " UNION ALL SELECT ' pin', 'HOLD_CURSOR' WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_cursors"
          + " WHERE is_holdable)"
          + " UNION ALL SELECT ' pin', 'PREPARE' WHERE EXISTS"
          + " (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql)";

  /** The name of a snapshot row that reports a pin. */
  static final String PIN = " pin";

  private final Map<String, String> startup;
  private Map<String, String> desired;
  private boolean captureNeeded; // the client may have changed settings since the last capture
  private Map<String, String> captured; // rows of the capture in flight, else null
  private final EnumSet<SqlScan.Pin> capturedPins = EnumSet.noneOf(SqlScan.Pin.class);

  SessionSettings(StartupMessage startupMessage) {
    this.startup = of(startupMessage);
    this.desired = startup;
  }

  /** The settings the client's session has: what a server connection must carry for it. */
  Map<String, String> desired() {
    return desired;
  }

  /** The client ran something that may have changed its settings: capture them after it. */
  void mayHaveChanged() {
    captureNeeded = true;
  }

  boolean captureNeeded() {
    return captureNeeded;
  }

  /** The capture query ({@link #SNAPSHOT_SQL}) is sent. */
  /**
   * The settings that decide what a server reports at login, for the pool's cache of greetings: the
   * desired ones without a token's claims, which differ for every token and change no report.
   */
  Map<String, String> welcomeKey() {
    if (!desired.containsKey(ClientAuthHandler.CLAIMS)) {
      return desired;
    }
    Map<String, String> key = new LinkedHashMap<>(desired);
    key.remove(ClientAuthHandler.CLAIMS);
    key.remove(ClientAuthHandler.CLAIMS_SIGNATURE);
    return key;
  }

  void captureStarted() {
    captureNeeded = false;
    captured = new LinkedHashMap<>();
    capturedPins.clear();
  }

  /** One row (name, setting) of the capture's reply. */
  void captured(List<String> row) {
    if (PIN.equals(row.get(0))) {
      capturedPins.add(SqlScan.Pin.valueOf(row.get(1)));
    } else {
      captured.put(row.get(0), row.get(1));
    }
  }

  /** The state the last capture found that pins the client to its server connection. */
  Set<SqlScan.Pin> capturedPins() {
    return capturedPins;
  }

  /**
   * The capture ended: returns what the server connection now carries. RESET restores the startup
   * value, as on a direct connection, so the client's settings are its startup's with the captured
   * ones over them.
   */
  Map<String, String> captureDone() {
    Map<String, String> now = Map.copyOf(captured);
    Map<String, String> merged = new LinkedHashMap<>(startup);
    merged.putAll(now);
    desired = Map.copyOf(merged);
    captured = null;
    return now;
  }

  /**
   * The client leaves with settings that were never captured: true when the connection's recorded
   * settings can no longer be trusted (they must be applied afresh before reuse).
   */
  boolean abandon() {
    boolean unknown = captureNeeded;
    captureNeeded = false;
    return unknown;
  }

  /** The startup parameters that are session settings, including {@code -c} options. */
  private static Map<String, String> of(StartupMessage startup) {
    Map<String, String> settings = new LinkedHashMap<>();
    startup
        .parameters()
        .forEach(
            (k, v) -> {
              if (!NOT_SETTINGS.contains(k) && !k.startsWith("_pq_")) {
                settings.put(k, v);
              }
            });
    String options = startup.parameters().get("options");
    if (options != null) {
      String[] words = options.trim().split("\\s+");
      for (int i = 0; i < words.length; i++) {
        String setting = null;
        if (words[i].equals("-c") && i + 1 < words.length) {
          setting = words[++i];
        } else if (words[i].startsWith("-c")) {
          setting = words[i].substring(2);
        } else if (words[i].startsWith("--")) {
          setting = words[i].substring(2);
        }
        int eq = setting == null ? -1 : setting.indexOf('=');
        if (eq > 0) {
          settings.put(setting.substring(0, eq).replace('-', '_'), setting.substring(eq + 1));
        }
      }
    }
    return Map.copyOf(settings);
  }

  /**
   * What makes a server connection that has the settings {@code applied} (null: unknown) carry
   * {@code desired}: only the values that differ when both have the same parameters and the same
   * role (with a role set, only custom {@code x.y} parameters, which need no rights: a JWT client's
   * claims), else everything afresh. One implicit transaction either way.
   */
  static String applySql(Map<String, String> desired, Map<String, String> applied) {
    if (applied == null
        || !applied.keySet().equals(desired.keySet())
        || !Objects.equals(applied.get("role"), desired.get("role"))) {
      return applySql(desired);
    }
    boolean roleSet = desired.containsKey("role");
    StringBuilder sql = new StringBuilder("SELECT ");
    String sep = "";
    for (Map.Entry<String, String> e : desired.entrySet()) {
      if (e.getValue().equals(applied.get(e.getKey()))) {
        continue;
      }
      if (roleSet && e.getKey().indexOf('.') < 0) {
        return applySql(desired);
      }
      sql.append(sep).append(setConfig(e.getKey(), e.getValue()));
      sep = ", ";
    }
    return sql.toString();
  }

  /** Resets the connection's session and applies {@code desired}; the role goes last. */
  static String applySql(Map<String, String> desired) {
    StringBuilder sql = new StringBuilder("SET SESSION AUTHORIZATION DEFAULT; RESET ALL;");
    if (!desired.isEmpty()) {
      sql.append(" SELECT ");
      String sep = "";
      String role = null;
      for (Map.Entry<String, String> e : desired.entrySet()) {
        if (e.getKey().equals("role")) {
          role = e.getValue(); // last: other settings may need the login role's rights
          continue;
        }
        sql.append(sep).append(setConfig(e.getKey(), e.getValue()));
        sep = ", ";
      }
      if (role != null) {
        sql.append(sep).append(setConfig("role", role));
      }
    }
    return sql.toString();
  }

  private static String setConfig(String name, String value) {
    return "pg_catalog.set_config(" + literal(name) + ", " + literal(value) + ", false)";
  }

  /** An escape-string literal: correct whatever standard_conforming_strings is. */
  static String literal(String s) {
    return "E'" + s.replace("\\", "\\\\").replace("'", "''") + "'";
  }
}
