package org.cryoprotect.proxy.frontend;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;

/**
 * A client's session settings in transaction mode: read from its startup packet, captured from the
 * server after a transaction that may have changed them, and the SQL that puts them on a server
 * connection that has another client's.
 */
final class SessionSettings {
  /** Startup parameters that are not session settings. */
  private static final List<String> NOT_SETTINGS =
      List.of("user", "database", "replication", "options");

  /** What the session parameters of a server connection are after the client's transaction. */
  static final String SNAPSHOT_SQL =
      "SELECT name, setting FROM pg_catalog.pg_settings"
          + " WHERE source = 'session' AND name NOT IN ('role', 'session_authorization')"
          + " UNION ALL SELECT 'role', pg_catalog.current_setting('role')"
          + " WHERE pg_catalog.current_setting('role') <> 'none'";

  private SessionSettings() {}

  /** The startup parameters that are session settings, including {@code -c} options. */
  static Map<String, String> of(StartupMessage startup) {
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
