package org.cryoprotect.proxy.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * psql and pgbench for tests that drive them: the ones of {@code PG_BIN} when it has them, else the
 * machine's. Missing, a test skips on a developer's machine but fails in CI ({@code CI=true}),
 * where a skipped acceptance test would pass for nothing.
 */
public final class ClientTools {
  private ClientTools() {}

  public static Path require(String name) {
    Path tool = find(name);
    if (!Files.isExecutable(tool)) {
      String why = name + " is needed (Debian postgresql-client), not found at " + tool;
      if ("true".equalsIgnoreCase(System.getenv("CI"))) {
        throw new AssertionError(why);
      }
      assumeTrue(false, why);
    }
    return tool;
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
