package org.cryoprotect.proxy.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import org.cryoprotect.proxy.config.ConfigException;
import org.cryoprotect.proxy.config.ConfigLoader;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.FlywayException;
import org.flywaydb.core.api.output.MigrateResult;
import org.postgresql.ds.PGSimpleDataSource;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code cryoproxy migrate --config FILE [--claims-key FILE]}: applies the migrations of {@code
 * sql/migrations} (carried in the jar) with Flyway to the primary of every configured database,
 * logging in as {@code migrate.user}; validates the checksums of those already applied; prints what
 * it applied; stores the claims HMAC key when given. Exit 0 when every database is up to date, 2
 * with the reason on the first failure (the databases before it keep what was applied: each
 * migration is one transaction).
 */
@Command(
    name = "migrate",
    description = "Apply sql/ migrations to every configured database's primary.")
final class Migrate implements Callable<Integer> {
  static final String LOCATION = "classpath:sql/migrations";

  @Option(names = "--config", required = true, description = "YAML configuration file")
  Path config;

  @Option(
      names = "--claims-key",
      description = "file with the claims HMAC key as hex (at least 32 bytes): stored in auth")
  Path claimsKey;

  private final PrintStream out;
  private final PrintStream err;

  Migrate() {
    this(System.out, System.err);
  }

  Migrate(PrintStream out, PrintStream err) {
    this.out = out;
    this.err = err;
  }

  @Override
  public Integer call() {
    ProxyConfig loaded;
    byte[] key = null;
    try {
      loaded = ConfigLoader.load(config);
      if (claimsKey != null) {
        key = readKey(claimsKey);
      }
    } catch (ConfigException e) {
      err.println("cryoproxy migrate: invalid configuration: " + e.getMessage());
      return Main.CONFIG_ERROR;
    } catch (IllegalArgumentException | IOException e) {
      err.println("cryoproxy migrate: claims key " + claimsKey + ": " + e.getMessage());
      return Main.CONFIG_ERROR;
    }
    for (Map.Entry<String, PGSimpleDataSource> target : targets(loaded).entrySet()) {
      String where = target.getKey();
      try {
        Flyway flyway =
            Flyway.configure()
                .dataSource(target.getValue())
                .locations(LOCATION)
                .validateOnMigrate(true)
                .failOnMissingLocations(true)
                // The application's own database already has tables of its own: recorded as
                // version 0, with every migration of ours still to apply (Flyway would refuse).
                .baselineOnMigrate(true)
                .baselineVersion("0")
                .baselineDescription("the database before cryoproxy migrate")
                .load();
        MigrateResult result = flyway.migrate();
        if (result.migrationsExecuted == 0) {
          out.printf("%s: up to date at version %s%n", where, flyway.info().current().getVersion());
        }
        result.migrations.forEach(
            m ->
                out.printf(
                    "%s: applied %s %s (%d ms)%n",
                    where, m.version, m.description, m.executionTime));
        if (key != null) {
          storeKey(target.getValue(), key);
          out.printf("%s: claims key stored%n", where);
        }
      } catch (FlywayException | SQLException e) {
        err.println("cryoproxy migrate: " + where + ": " + e.getMessage());
        return Main.CONFIG_ERROR;
      }
    }
    return 0;
  }

  /** One data source per distinct (primary, dbname), named as the user reads it. */
  static Map<String, PGSimpleDataSource> targets(ProxyConfig config) {
    Map<String, PGSimpleDataSource> targets = new LinkedHashMap<>();
    for (Database db : config.databases().values()) {
      String where = "database " + db.name() + " (" + db.dbname() + " on " + db.primary() + ")";
      boolean seen =
          targets.values().stream()
              .anyMatch(
                  ds ->
                      ds.getDatabaseName().equals(db.dbname())
                          && ds.getServerNames()[0].equals(db.primary().host())
                          && ds.getPortNumbers()[0] == db.primary().port());
      if (seen) {
        continue;
      }
      PGSimpleDataSource ds = new PGSimpleDataSource();
      ds.setServerNames(new String[] {db.primary().host()});
      ds.setPortNumbers(new int[] {db.primary().port()});
      ds.setDatabaseName(db.dbname());
      ds.setUser(config.migrate().user());
      ds.setPassword(config.migrate().password());
      ds.setApplicationName("cryoproxy-migrate");
      ds.setSslmode(config.serverTls().mode().sslmode());
      if (config.serverTls().caFile() != null) {
        ds.setSslRootCert(config.serverTls().caFile().toString());
      }
      ds.setConnectTimeout(10);
      targets.put(where, ds);
    }
    return targets;
  }

  /** The key file: hex, whitespace ignored, at least 32 bytes. */
  static byte[] readKey(Path file) throws IOException {
    String hex = Files.readString(file, StandardCharsets.US_ASCII).replaceAll("\\s+", "");
    byte[] key = HexFormat.of().parseHex(hex);
    if (key.length < 32) {
      throw new IllegalArgumentException(
          "holds " + key.length + " bytes; at least 32 random bytes (64 hex digits) are needed");
    }
    return key;
  }

  private static void storeKey(PGSimpleDataSource ds, byte[] key) throws SQLException {
    try (Connection c = ds.getConnection();
        PreparedStatement upsert =
            c.prepareStatement(
                "INSERT INTO auth.claims_key (id, key) VALUES (true, ?)"
                    + " ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, set_at = now()")) {
      upsert.setBytes(1, key);
      upsert.executeUpdate();
    }
  }
}
