package org.cryoprotect.proxy.config;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A YAML mapping read key by key, so that every error names the dotted key it is about and keys
 * nobody asked for are reported as unknown (a typo must not silently fall back to a default).
 */
final class ConfigNode {
  private static final Pattern BYTES = Pattern.compile("(\\d{1,12})\\s*(kb|mb|gb)?");
  private static final Pattern DURATION = Pattern.compile("(\\d+)\\s*(ms|s|m|h)?");

  private final String path;
  private final JsonNode node;
  private final Set<String> read = new HashSet<>();
  private final Path baseDir;

  ConfigNode(String path, JsonNode node, Path baseDir) throws ConfigException {
    if (node != null && !node.isNull() && !node.isObject()) {
      throw new ConfigException(path, "expected a mapping");
    }
    this.path = path;
    this.node = node;
    this.baseDir = baseDir;
  }

  String key(String name) {
    return path.isEmpty() ? name : path + "." + name;
  }

  private JsonNode raw(String name) {
    read.add(name);
    if (node == null || node.isNull()) {
      return null;
    }
    JsonNode value = node.get(name);
    return value == null || value.isNull() ? null : value;
  }

  /** Whether the section was in the file at all (an empty mapping counts). */
  boolean present() {
    return node != null && !node.isNull();
  }

  /** Whether {@code name} holds a list (rather than a single value). */
  boolean isList(String name) {
    return node != null && node.hasNonNull(name) && node.get(name).isArray();
  }

  boolean has(String name) {
    return node != null && node.hasNonNull(name);
  }

  ConfigNode child(String name) throws ConfigException {
    return new ConfigNode(key(name), raw(name), baseDir);
  }

  List<String> fieldNames() {
    List<String> names = new ArrayList<>();
    if (node != null) {
      node.fieldNames().forEachRemaining(names::add);
    }
    return names;
  }

  List<ConfigNode> list(String name) throws ConfigException {
    JsonNode value = raw(name);
    List<ConfigNode> items = new ArrayList<>();
    if (value == null) {
      return items;
    }
    if (!value.isArray()) {
      throw new ConfigException(key(name), "expected a list");
    }
    for (int i = 0; i < value.size(); i++) {
      items.add(new ConfigNode(key(name) + "[" + i + "]", value.get(i), baseDir));
    }
    return items;
  }

  String string(String name, String fallback) throws ConfigException {
    JsonNode value = raw(name);
    if (value == null) {
      return fallback;
    }
    if (!value.isValueNode()) {
      throw new ConfigException(key(name), "expected a string");
    }
    return value.asText();
  }

  String requiredString(String name) throws ConfigException {
    String value = string(name, null);
    if (value == null || value.isBlank()) {
      throw new ConfigException(key(name), "is required");
    }
    return value;
  }

  int integer(String name, int fallback, int min, int max) throws ConfigException {
    JsonNode value = raw(name);
    if (value == null) {
      return fallback;
    }
    long parsed;
    if (value.isIntegralNumber()) {
      parsed = value.asLong();
    } else if (value.isTextual() && value.asText().trim().matches("-?\\d+")) {
      parsed = Long.parseLong(value.asText().trim());
    } else {
      throw new ConfigException(key(name), "expected an integer, got '" + value.asText() + "'");
    }
    if (parsed < min || parsed > max) {
      throw new ConfigException(key(name), "must be between " + min + " and " + max);
    }
    return (int) parsed;
  }

  /** {@code true}/{@code false} (also {@code on}/{@code off}, {@code yes}/{@code no}). */
  boolean bool(String name, boolean fallback) throws ConfigException {
    String value = string(name, null);
    if (value == null) {
      return fallback;
    }
    return switch (value.trim().toLowerCase(Locale.ROOT)) {
      case "true", "on", "yes" -> true;
      case "false", "off", "no" -> false;
      default ->
          throw new ConfigException(key(name), "expected true or false, got '" + value + "'");
    };
  }

  /** A byte count: a number, optionally with a kB, MB or GB suffix (powers of 1024). */
  long bytes(String name, long fallback) throws ConfigException {
    String value = string(name, null);
    if (value == null) {
      return fallback;
    }
    Matcher m = BYTES.matcher(value.trim().toLowerCase(Locale.ROOT));
    if (!m.matches()) {
      throw new ConfigException(
          key(name), "expected a size such as 1048576, 512kB, 16MB or 1GB, got '" + value + "'");
    }
    long amount = Long.parseLong(m.group(1));
    String unit = m.group(2) == null ? "" : m.group(2);
    return switch (unit) {
      case "kb" -> amount << 10;
      case "mb" -> amount << 20;
      case "gb" -> amount << 30;
      default -> amount;
    };
  }

  /**
   * Durations are written {@code 500ms}, {@code 15s}, {@code 2m}, {@code 1h}; a bare number is
   * seconds.
   */
  Duration duration(String name, Duration fallback) throws ConfigException {
    JsonNode value = raw(name);
    if (value == null) {
      return fallback;
    }
    Matcher m = DURATION.matcher(value.asText().trim().toLowerCase(Locale.ROOT));
    if (!value.isValueNode() || !m.matches()) {
      throw new ConfigException(
          key(name),
          "expected a duration such as 500ms, 15s, 2m or 1h, got '" + value.asText() + "'");
    }
    long amount = Long.parseLong(m.group(1));
    String unit = m.group(2) == null ? "s" : m.group(2);
    return switch (unit) {
      case "ms" -> Duration.ofMillis(amount);
      case "m" -> Duration.ofMinutes(amount);
      case "h" -> Duration.ofHours(amount);
      default -> Duration.ofSeconds(amount);
    };
  }

  <E extends Enum<E>> E choice(String name, Class<E> type, E fallback) throws ConfigException {
    String value = string(name, null);
    if (value == null) {
      return fallback;
    }
    String wanted = value.trim().replace('-', '_').toUpperCase(Locale.ROOT);
    for (E constant : type.getEnumConstants()) {
      if (constant.name().equals(wanted)) {
        return constant;
      }
    }
    List<String> allowed = new ArrayList<>();
    for (E constant : type.getEnumConstants()) {
      allowed.add(constant.name().toLowerCase(Locale.ROOT).replace('_', '-'));
    }
    throw new ConfigException(
        key(name), "'" + value + "' is not one of " + String.join(", ", allowed));
  }

  /** A list of names: a YAML sequence of scalars, or one comma-separated string. */
  List<String> strings(String name) throws ConfigException {
    JsonNode value = raw(name);
    List<String> items = new ArrayList<>();
    if (value == null) {
      return items;
    }
    if (value.isArray()) {
      for (JsonNode item : value) {
        if (!item.isValueNode()) {
          throw new ConfigException(key(name), "expected a list of names");
        }
        items.add(item.asText().trim());
      }
    } else if (value.isValueNode()) {
      for (String item : value.asText().split(",")) {
        if (!item.isBlank()) {
          items.add(item.trim());
        }
      }
    } else {
      throw new ConfigException(key(name), "expected a list of names");
    }
    return items;
  }

  /** A directory path, relative to the config file's folder; it need not exist yet. */
  Path directory(String name, String fallback) throws ConfigException {
    String value = string(name, fallback);
    return value == null || value.isBlank() ? null : baseDir.resolve(value).normalize();
  }

  /** A file path, relative to the config file's folder; it must exist and be readable. */
  Path file(String name) throws ConfigException {
    String value = string(name, null);
    if (value == null || value.isBlank()) {
      return null;
    }
    Path file = baseDir.resolve(value).normalize();
    if (!Files.isReadable(file)) {
      throw new ConfigException(key(name), "cannot read file " + file);
    }
    return file;
  }

  /** Call after reading a mapping: any key that was not read is a typo or an unsupported option. */
  void rejectUnknownKeys() throws ConfigException {
    if (node == null) {
      return;
    }
    Iterator<String> names = node.fieldNames();
    while (names.hasNext()) {
      String name = names.next();
      if (!read.contains(name)) {
        throw new ConfigException(key(name), "unknown key");
      }
    }
  }
}
