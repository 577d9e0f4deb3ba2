package org.cryoprotect.embedded;

import com.sun.security.auth.module.UnixSystem;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.UserPrincipal;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.nio.file.attribute.UserPrincipalNotFoundException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * The operating-system account PostgreSQL runs as, and the few process chores around it. PostgreSQL
 * refuses to start as root, so when the tests run as root every PostgreSQL program is launched as
 * {@code postgres} (or {@code nobody}) and every file it must own is chowned to that account.
 */
public final class OsUser {

  private static final boolean ROOT = new UnixSystem().getUid() == 0;
  private static final String NAME = ROOT ? pickUnprivileged() : null;

  private OsUser() {}

  static boolean dropsPrivileges() {
    return ROOT;
  }

  /** Prefixes {@code command} so it runs as the unprivileged account when we are root. */
  static List<String> command(List<String> command) {
    List<String> full = new ArrayList<>();
    if (ROOT) {
      if (Files.isExecutable(Path.of("/usr/sbin/runuser"))
          || Files.isExecutable(Path.of("/sbin/runuser"))) {
        full.addAll(List.of("runuser", "-u", NAME, "--"));
      } else {
        full.addAll(
            List.of("setpriv", "--reuid=" + NAME, "--regid=" + NAME, "--init-groups", "--"));
      }
    }
    full.addAll(command);
    return full;
  }

  /** Gives {@code path} and everything under it to the unprivileged account; no-op unless root. */
  static void chown(Path path) {
    if (!ROOT) {
      return;
    }
    try {
      UserPrincipalLookupService lookup = FileSystems.getDefault().getUserPrincipalLookupService();
      UserPrincipal user = lookup.lookupPrincipalByName(NAME);
      GroupPrincipal group = primaryGroup(lookup);
      try (Stream<Path> all = Files.walk(path)) {
        for (Path p : (Iterable<Path>) all::iterator) {
          PosixFileAttributeView view = Files.getFileAttributeView(p, PosixFileAttributeView.class);
          view.setOwner(user);
          if (group != null) {
            view.setGroup(group);
          }
        }
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot chown " + path + " to " + NAME, e);
    }
  }

  /**
   * Runs a program to completion and returns its combined output. Output goes through a file, not a
   * pipe: {@code pg_ctl start} leaves a daemon behind that could inherit a pipe and keep us waiting
   * for an EOF that never comes.
   */
  static String run(List<String> command, Path workDir, Duration timeout) {
    return exec(command(command), workDir, timeout);
  }

  /** Runs a program as ourselves, e.g. tar for files only we need to own. */
  static String runAsSelf(List<String> command, Duration timeout) {
    return exec(command, null, timeout);
  }

  private static String exec(List<String> command, Path workDir, Duration timeout) {
    Path out = null;
    try {
      out = Files.createTempFile("cryoproxy-cmd-", ".out");
      ProcessBuilder builder =
          new ProcessBuilder(command)
              // An unprivileged child cannot always read the JVM's cwd, and initdb/postgres
              // abort when they cannot resolve their own working directory.
              .directory(workDir == null ? null : workDir.toFile())
              .redirectErrorStream(true)
              .redirectOutput(out.toFile())
              .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()));
      // PGDATA, PGPORT and friends from the caller's shell would silently retarget pg_ctl.
      builder.environment().keySet().removeIf(k -> k.startsWith("PG"));
      builder.environment().put("LC_ALL", "C");
      Process process = builder.start();
      if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        process.destroyForcibly();
        throw new CommandFailedException(
            command, -1, Files.readString(out, StandardCharsets.UTF_8));
      }
      String output = Files.readString(out, StandardCharsets.UTF_8);
      if (process.exitValue() != 0) {
        throw new CommandFailedException(command, process.exitValue(), output);
      }
      return output;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot run " + command, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted running " + command, e);
    } finally {
      if (out != null) {
        try {
          Files.deleteIfExists(out);
        } catch (IOException ignored) {
          // A leftover temp file is harmless.
        }
      }
    }
  }

  /** Sends a signal by name (KILL, STOP, CONT, ...) with the system {@code kill}. */
  static void signal(long pid, String signal) {
    try {
      Process kill =
          new ProcessBuilder("kill", "-" + signal, Long.toString(pid))
              .redirectErrorStream(true)
              .start();
      kill.getInputStream().readAllBytes();
      kill.waitFor(10, TimeUnit.SECONDS);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot signal " + pid, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Whether {@code pid} still runs. A killed daemon whose parent is a non-reaping init lingers as a
   * zombie, which {@link ProcessHandle#isAlive()} still reports as alive.
   */
  static boolean isRunning(long pid) {
    try {
      String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
      char state = stat.charAt(stat.lastIndexOf(')') + 2);
      return state != 'Z' && state != 'X';
    } catch (IOException | StringIndexOutOfBoundsException e) {
      return false;
    }
  }

  /** Best effort: what cannot be deleted stays in the temp directory. */
  public static void deleteRecursively(Path root) {
    if (!Files.exists(root, LinkOption.NOFOLLOW_LINKS)) {
      return;
    }
    try (Stream<Path> all = Files.walk(root)) {
      all.sorted(Comparator.reverseOrder())
          .forEach(
              p -> {
                try {
                  Files.deleteIfExists(p);
                } catch (IOException ignored) {
                  // see method comment
                }
              });
    } catch (IOException | UncheckedIOException ignored) {
      // see method comment
    }
  }

  private static String pickUnprivileged() {
    UserPrincipalLookupService lookup = FileSystems.getDefault().getUserPrincipalLookupService();
    for (String candidate : List.of("postgres", "nobody")) {
      try {
        lookup.lookupPrincipalByName(candidate);
        return candidate;
      } catch (UserPrincipalNotFoundException e) {
        // try the next one
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    throw new IllegalStateException("running as root but neither 'postgres' nor 'nobody' exists");
  }

  private static GroupPrincipal primaryGroup(UserPrincipalLookupService lookup) throws IOException {
    // The primary group usually shares the account's name; nobody's is nogroup on Debian.
    for (String candidate : List.of(NAME, "nogroup")) {
      try {
        return lookup.lookupPrincipalByGroupName(candidate);
      } catch (UserPrincipalNotFoundException e) {
        // try the next one
      }
    }
    return null;
  }

  static final class CommandFailedException extends RuntimeException {
    private final String output;

    CommandFailedException(List<String> command, int exit, String output) {
      super(
          String.join(" ", command)
              + (exit < 0 ? " timed out" : " exited with " + exit)
              + (output.isBlank() ? "" : ":\n" + output.strip()));
      this.output = output;
    }

    String output() {
      return output;
    }
  }
}
