"""worldmodel"""
