package org.cryoprotect.proxy.auth;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * PgBouncer's auth_file (userlist.txt): one {@code "user" "secret"} per line, a doubled quote
 * standing for a quote, the rest of a line after the second field ignored (as PgBouncer does, so
 * existing files keep working). Blank lines and lines starting with ';' or '#' are comments. Unlike
 * PgBouncer, which skips lines it cannot read, a malformed line is an error naming file and line: a
 * silently dropped user shows up much later as a baffling login failure.
 *
 * <p>Immutable once loaded; a reload builds a new instance.
 */
public final class UserList implements SecretSource {
  private final String source;
  private final Map<String, Secret> users;

  private UserList(String source, Map<String, Secret> users) {
    this.source = source;
    this.users = Map.copyOf(users);
  }

  public static UserList load(Path path) throws IOException {
    List<String> lines;
    try {
      lines = Files.readAllLines(path, StandardCharsets.UTF_8);
    } catch (CharacterCodingException e) {
      throw new IOException(path + ": not valid UTF-8", e);
    }
    return parse(path.toString(), lines);
  }

  /** {@code source} names the origin in error messages, usually the file path. */
  public static UserList parse(String source, List<String> lines) throws IOException {
    Map<String, Secret> users = new HashMap<>();
    for (int i = 0; i < lines.size(); i++) {
      String line = lines.get(i);
      if (i == 0 && line.startsWith("\uFEFF")) {
        line = line.substring(1); // editors on Windows like to add a byte-order mark
      }
      try {
        parseLine(line, users);
      } catch (IllegalArgumentException e) {
        throw new IOException(source + ":" + (i + 1) + ": " + e.getMessage());
      }
    }
    return new UserList(source, users);
  }

  private static void parseLine(String line, Map<String, Secret> users) {
    Cursor in = new Cursor(line);
    in.skipBlanks();
    if (in.atEnd() || in.peek() == ';' || in.peek() == '#') {
      return;
    }
    String user = in.quoted("user name");
    if (user.isEmpty()) {
      throw new IllegalArgumentException("empty user name");
    }
    in.skipBlanks();
    String secret = in.quoted("password");
    // A later line for the same user wins, as when PgBouncer reloads over an existing entry.
    users.put(user, Secret.parse(secret));
  }

  public Optional<Secret> find(String user) {
    return Optional.ofNullable(users.get(user));
  }

  @Override
  public CompletableFuture<Optional<Secret>> lookup(String user) {
    return CompletableFuture.completedFuture(find(user));
  }

  public int size() {
    return users.size();
  }

  @Override
  public String toString() {
    return "UserList[" + source + ", " + users.size() + " users]";
  }

  private static final class Cursor {
    private final String line;
    private int at;

    Cursor(String line) {
      this.line = line;
    }

    boolean atEnd() {
      return at >= line.length();
    }

    char peek() {
      return line.charAt(at);
    }

    void skipBlanks() {
      while (!atEnd() && Character.isWhitespace(peek())) {
        at++;
      }
    }

    String quoted(String what) {
      if (atEnd() || peek() != '"') {
        throw new IllegalArgumentException("expected a double-quoted " + what);
      }
      at++;
      StringBuilder value = new StringBuilder();
      while (!atEnd()) {
        char c = line.charAt(at++);
        if (c != '"') {
          value.append(c);
        } else if (!atEnd() && peek() == '"') {
          value.append('"');
          at++;
        } else {
          return value.toString();
        }
      }
      // The message names the field but never echoes it: it may be a password.
      throw new IllegalArgumentException("unterminated quoted " + what);
    }
  }
}
