package org.cryoprotect.proxy.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * psql and pgbench for tests that drive them: the ones of {@code PG_BIN} when it has them, else the
 * machine's. Missing, a test skips on a developer's machine but fails in CI ({@code CI=true}),
 * where a skipped acceptance test would pass for nothing; {@link #requireTool} does the same for
 * any other tool.
 */
public final class ClientTools {
  private ClientTools() {}

  public static Path require(String name) {
    Path tool = find(name);
    requireTool(
        Files.isExecutable(tool),
        name + " is needed (Debian postgresql-client), not found at " + tool);
    return tool;
  }

  /**
   * A test's tool (psql, promtool, prometheus, npm, a client library) must be there: missing, the
   * test skips on a developer's machine and fails in CI ({@code CI=true}).
   */
  public static void requireTool(boolean present, String why) {
    if (!present && "true".equalsIgnoreCase(System.getenv("CI"))) {
      throw new AssertionError(why);
    }
    assumeTrue(present, why);
  }

  public static Path find(String name) {
    String bin = System.getProperty("cryoproxy.pg.bin", "");
    if (!bin.isBlank() && Files.isExecutable(Path.of(bin, name))) {
      return Path.of(bin, name);
    }
    for (String p : System.getenv().getOrDefault("PATH", "/usr/bin").split(":")) {
      if (!p.isEmpty() && Files.isExecutable(Path.of(p, name))) {
        return Path.of(p, name);
      }
    }
    return Path.of("/usr/lib/postgresql/15/bin", name);
  }
}
