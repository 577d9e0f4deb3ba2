package org.cryoprotect.proxy.config;

/** A configuration problem; the message always starts with the offending key's dotted path. */
public final class ConfigException extends Exception {
  private final String key;

  public ConfigException(String key, String problem) {
    super(key.isEmpty() ? problem : key + ": " + problem);
    this.key = key;
  }

  public String key() {
    return key;
  }
}
