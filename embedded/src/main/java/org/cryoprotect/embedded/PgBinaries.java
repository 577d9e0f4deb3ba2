package org.cryoprotect.embedded;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;

/**
 * Finds the PostgreSQL binaries the tests run: {@code PG_BIN} (system property {@code
 * cryoproxy.pg.bin}, then the environment variable) when it names a directory, otherwise the zonky
 * PostgreSQL build on the test classpath, unpacked once per machine.
 */
public final class PgBinaries {

  static final String PROPERTY = "cryoproxy.pg.bin";
  private static final String ZONKY_RESOURCE = "/postgres-linux-x86_64.txz";
  private static volatile Path cached;

  private PgBinaries() {}

  /** The directory holding {@code initdb}, {@code pg_ctl} and {@code postgres}. */
  public static Path binDir() {
    Path dir = cached;
    if (dir == null) {
      synchronized (PgBinaries.class) {
        dir = cached;
        if (dir == null) {
          dir = configured();
          if (dir == null) {
            dir = extractZonky().resolve("bin");
          }
          cached = dir;
        }
      }
    }
    return dir;
  }

  /**
   * {@code PG_BIN} if it names an existing directory; Maven passes "" or "${env.PG_BIN}" when
   * unset.
   */
  static Path configured() {
    for (String value : new String[] {System.getProperty(PROPERTY), System.getenv("PG_BIN")}) {
      if (value != null && !value.isBlank() && !value.contains("${")) {
        Path dir = Path.of(value.strip());
        if (Files.isDirectory(dir)) {
          return dir.toAbsolutePath();
        }
      }
    }
    return null;
  }

  /**
   * Unpacks into {@code /tmp/cryoproxy-pg-<content hash>}: the hash means a different build is
   * never mistaken for this one, and unpacking into a private directory followed by an atomic
   * rename means concurrent JVMs (parallel builds share this machine) see a complete tree or none.
   */
  private static Path extractZonky() {
    Path tmp = Path.of(System.getProperty("java.io.tmpdir"));
    Path target = tmp.resolve("cryoproxy-pg-" + resourceHash());
    if (Files.isRegularFile(target.resolve("bin/postgres"))) {
      return target;
    }
    Path staging = null;
    try {
      staging = Files.createTempDirectory(tmp, "cryoproxy-pg-staging-");
      Path archive = staging.resolve("postgres.txz");
      try (InputStream in = openResource()) {
        Files.copy(in, archive);
      }
      Path tree = Files.createDirectory(staging.resolve("tree"));
      Duration timeout = Duration.ofMinutes(5);
      OsUser.runAsSelf(List.of("tar", "-xJf", archive.toString(), "-C", tree.toString()), timeout);
      // The unprivileged PostgreSQL account must be able to read and run everything.
      OsUser.runAsSelf(List.of("chmod", "-R", "a+rX", tree.toString()), timeout);
      try {
        Files.move(tree, target, StandardCopyOption.ATOMIC_MOVE);
      } catch (IOException e) {
        // Another JVM won the race; its tree is complete because it arrived by rename.
        if (!Files.isRegularFile(target.resolve("bin/postgres"))) {
          throw e;
        }
      }
      return target;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot unpack PostgreSQL binaries into " + target, e);
    } finally {
      if (staging != null) {
        OsUser.deleteRecursively(staging);
      }
    }
  }

  private static InputStream openResource() {
    InputStream in = PgBinaries.class.getResourceAsStream(ZONKY_RESOURCE);
    if (in == null) {
      throw new IllegalStateException(
          "PG_BIN is unset and "
              + ZONKY_RESOURCE
              + " (zonky binaries jar) is not on the classpath");
    }
    return in;
  }

  private static String resourceHash() {
    try (InputStream in = openResource()) {
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      byte[] buffer = new byte[1 << 16];
      for (int n; (n = in.read(buffer)) > 0; ) {
        sha.update(buffer, 0, n);
      }
      return HexFormat.of().formatHex(sha.digest(), 0, 8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
